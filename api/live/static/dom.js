// Small DOM helpers. Everything the server sends is put on the page as text (textContent),
// never parsed as HTML, so a participant's name cannot inject markup.

/** The element with data-testid `id` inside `root`. */
export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

/**
 * Create an element: `h("td", {class: "num"}, "1.23")`.
 * Attributes starting with "on" become listeners; `dataset` and boolean values are handled.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "class") {
      element.className = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

/** Show `message` in a notice element, or hide it when `message` is empty. */
export function setNotice(element, message) {
  if (!element) return;
  element.textContent = message || "";
  element.hidden = !message;
}

/** Set text only when it changed: keeps re-renders cheap and screen readers quiet. */
export function setText(element, text) {
  if (element && element.textContent !== text) element.textContent = text;
}

/**
 * Make `container`'s children match `items`, one child per item, reusing the child of the same
 * key. Reuse matters: a row keeps its typed-in price, its focus and its pressed button while
 * the market ticks around it.
 *   create(item) -> Element     builds a child (once per key)
 *   update(element, item)       refreshes it (every render)
 */
export function syncChildren(container, items, key, create, update) {
  const existing = new Map();
  for (const child of container.children) existing.set(child.dataset.key, child);
  let previous = null;
  for (const item of items) {
    const id = String(key(item));
    let child = existing.get(id);
    if (child) {
      existing.delete(id);
    } else {
      child = create(item);
      child.dataset.key = id;
    }
    update(child, item);
    const wanted = previous ? previous.nextSibling : container.firstChild;
    if (child !== wanted) container.insertBefore(child, wanted);
    previous = child;
  }
  for (const stale of existing.values()) stale.remove();
}

/** Disable a form's submit button while `action` runs, so a double click posts once. */
export async function whileBusy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** Wire every `[data-copy=testid]` button to copy that element's text. */
export function wireCopyButtons(root = document) {
  for (const button of root.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const text = byTestId(button.dataset.copy, root)?.textContent ?? "";
      const label = button.textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        // Clipboard access needs a secure context; select the text so Ctrl+C works instead.
        const range = document.createRange();
        range.selectNodeContents(byTestId(button.dataset.copy, root));
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        button.textContent = "Selected — press Ctrl+C";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
}
