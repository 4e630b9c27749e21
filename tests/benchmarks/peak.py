"""Peak memory of a benchmark's child process: source for the child's script (`python -c`),
shared by the benchmarks that run a market or a sweep in a fresh interpreter."""

#: Defines `peak_kib()` in the child (it must `import resource` first): its peak resident
#: size in KiB.
PEAK_KIB = """
def peak_kib():
    # VmHWM is this process's own high-water mark (exec starts it afresh); ru_maxrss may
    # carry the launching process's peak across fork and exec on Linux.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""
