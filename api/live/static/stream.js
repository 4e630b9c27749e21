// One market's event stream over a WebSocket. It resumes from the last event applied
// (`?since=`), so a dropped connection loses nothing and no event is applied twice; it
// reconnects with a growing, jittered delay so a restarting server is not stampeded.

import { streamUrl } from "./api.js";

const BACKOFF_S = [0.5, 1, 2, 4, 8, 15, 30];
const PING_EVERY_S = 10;
// The server speaks at least once a wall second, and answers pings; this much silence means
// the connection is dead even if the socket has not noticed.
const SILENCE_LIMIT_S = 25;

export class MarketStream {
  /**
   * callbacks:
   *   onEvents(events)    new events, in seq order, each exactly once
   *   onClock(frame)      {clock_s, state, speed} from any frame that carries them
   *   onStatus(status, text)  "connecting" | "live" | "reconnecting" | "offline"
   *   onHistoryLost()     events were lost for good: reload the snapshot, then restart()
   */
  constructor(marketId, sinceSeq, callbacks) {
    this.marketId = marketId;
    this.lastSeq = sinceSeq;
    this.callbacks = callbacks;
    this.socket = null;
    this.attempt = 0;
    this.stopped = true;
    this.timers = { retry: null, ping: null, watchdog: null };
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Start over from `sinceSeq` (after a fresh snapshot). */
  restart(sinceSeq) {
    this.lastSeq = sinceSeq;
    this.closeSocket();
    this.attempt = 0;
    this.connect();
  }

  stop() {
    this.stopped = true;
    this.closeSocket();
  }

  connect() {
    if (this.stopped) return;
    this.clearTimers();
    this.status(this.attempt ? "reconnecting" : "connecting", "connecting…");
    const socket = new WebSocket(streamUrl(this.marketId, this.lastSeq));
    this.socket = socket;
    socket.addEventListener("message", (message) => {
      if (socket === this.socket) this.receive(message.data);
    });
    socket.addEventListener("close", (close) => {
      if (socket === this.socket) this.dropped(close);
    });
    // An "error" is always followed by "close", where the retry happens.
  }

  closeSocket() {
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    if (socket.readyState === WebSocket.CONNECTING) {
      // Closing a socket mid-handshake makes the browser log an error; close it once open.
      socket.addEventListener("open", () => socket.close(1000, "page closed it"));
    } else if (socket.readyState === WebSocket.OPEN) {
      socket.close(1000, "page closed it");
    }
  }

  clearTimers() {
    clearTimeout(this.timers.retry);
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.watchdog);
  }

  dropped(close) {
    this.socket = null;
    this.clearTimers();
    if (this.stopped) return;
    const baseS = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    const delayS = baseS * (0.75 + Math.random() / 2);
    this.attempt += 1;
    const why = close.code === 4008 ? "fell behind" : "connection lost";
    this.status("reconnecting", `${why} — retrying in ${Math.ceil(delayS)} s`);
    this.timers.retry = setTimeout(() => this.connect(), delayS * 1000);
  }

  resetWatchdog() {
    clearTimeout(this.timers.watchdog);
    this.timers.watchdog = setTimeout(() => {
      this.socket?.close(4000, "silent too long");
    }, SILENCE_LIMIT_S * 1000);
  }

  receive(data) {
    this.resetWatchdog();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return; // not JSON: nothing the page can use
    }
    const handler = this.frameHandlers[frame.type];
    if (handler) handler.call(this, frame);
  }

  status(status, text) {
    this.callbacks.onStatus?.(status, text);
  }

  /** Apply the events after lastSeq; a gap means events were lost, so start over. */
  takeEvents(events) {
    const fresh = events.filter((event) => event.seq > this.lastSeq);
    if (!fresh.length) return;
    if (fresh[0].seq !== this.lastSeq + 1) {
      this.historyLost();
      return;
    }
    this.lastSeq = fresh[fresh.length - 1].seq;
    this.callbacks.onEvents(fresh);
  }

  historyLost() {
    this.closeSocket();
    this.status("reconnecting", "catching up…");
    this.callbacks.onHistoryLost();
  }
}

MarketStream.prototype.frameHandlers = {
  hello(frame) {
    this.attempt = 0;
    this.status("live", "live");
    this.callbacks.onClock(frame);
    this.timers.ping = setInterval(() => {
      if (this.socket?.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ type: "ping", id: "keepalive" }));
      }
    }, PING_EVERY_S * 1000);
  },

  events(frame) {
    this.takeEvents(frame.events || []);
    this.callbacks.onClock(frame);
  },

  clock(frame) {
    this.callbacks.onClock(frame);
  },

  error(frame) {
    if (frame.code === "history_gone") {
      this.historyLost();
    } else if (frame.code === "too_slow") {
      // The server closes next; the close handler reconnects from lastSeq.
      this.status("reconnecting", "fell behind — catching up");
    }
  },
};
