// Small DOM helpers. Everything shown comes from the API (app names, log
// lines, build output), so text is only ever set with textContent: no
// markup is ever parsed from data.

/** The element with this id; throws when the page lacks it. */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`dashboard: no element #${id}`);
  return node;
}

/**
 * A new element. `attrs` sets properties (className, type, value, …),
 * `dataset` entries (data: {…}) and event listeners (on: {click: fn});
 * children are nodes or strings (as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "on") {
      for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    } else if (key === "data") {
      Object.assign(node.dataset, value);
    } else if (key in node) {
      node[key] = value;
    } else {
      node.setAttribute(key, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `node`. */
export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

/** A local time for an RFC 3339 timestamp (the API's), or the text as is. */
export function when(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts ?? "") : d.toLocaleString();
}

/** The status badge: BUILDING, STARTING, RUNNING, FAILED, STOPPED. */
export function badge(status) {
  const text = status ?? "NONE";
  return el("span", { className: `badge badge-${text.toLowerCase()}`, data: { status: text } }, text);
}

/** Shows a message in the notice bar; errors stay until the next one. */
export function notify(message, kind = "info") {
  const bar = byId("notice");
  bar.className = `notice notice-${kind}`;
  bar.textContent = message;
  bar.hidden = false;
  // Good news fades; an error stays until something else is said.
  if (kind !== "error") {
    setTimeout(() => {
      if (bar.textContent === message) bar.hidden = true;
    }, 8000);
  }
}
