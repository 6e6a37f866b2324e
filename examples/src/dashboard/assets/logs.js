// The live log tail of the selected app and environment, and search: the
// server's search route when it has one, else a filter over the tail.

import { appPath, request } from "./api.js";
import { curlFor } from "./curl.js";
import { el, replace, when } from "./dom.js";
import { readNdjson } from "./streams.js";

const MAX_LINES = 2000;

export class LogView {
  /** `pane`: the lines; `note`: what is shown; `onCurl(cmd)`: shows a command. */
  constructor(pane, note, onCurl) {
    this.pane = pane;
    this.note = note;
    this.onCurl = onCurl;
    this.target = null;
    this.filter = "";
    this.searching = false;
    this.controller = null;
  }

  /**
   * Shows the logs of `app` in `env`; the tail starts at `activate()`, once
   * an instance exists (asking earlier would only get a 404).
   */
  follow(app, env) {
    this.stop();
    this.target = { app, env };
    this.filter = "";
    this.searching = false;
    replace(this.pane);
    this.say("Waiting for a running instance to follow its log.");
  }

  /** Starts the tail if it is not running (the app has an instance now). */
  activate() {
    if (!this.target || this.searching || this.controller) return;
    const controller = new AbortController();
    this.controller = controller;
    this.tail(controller).finally(() => {
      if (this.controller === controller) this.controller = null;
    });
  }

  async tail(controller) {
    const { app, env } = this.target;
    const path = `${appPath(app, env)}/logs?follow=true`;
    // Each connection reads from the start of what the server keeps.
    replace(this.pane);
    this.say("Following the live log.");
    try {
      await readNdjson(path, (item) => this.add(item), controller.signal);
      this.say("The log stream ended: the instance stopped. It resumes when one starts again.");
    } catch (err) {
      if (controller.signal.aborted) return;
      this.say(`Log stream unavailable: ${err?.message ?? err}. It resumes with the next status change.`);
    }
  }

  stop() {
    this.controller?.abort();
    this.controller = null;
  }

  say(text) {
    this.note.textContent = text;
  }

  add(item) {
    if (this.searching) return;
    if (item.error) {
      this.say(`The server ended the stream: ${item.error.message} (${item.error.code}).`);
      return;
    }
    const row = lineNode(item);
    row.hidden = !matches(item, this.filter);
    const atBottom = this.pane.scrollTop + this.pane.clientHeight >= this.pane.scrollHeight - 4;
    this.pane.append(row);
    while (this.pane.childElementCount > MAX_LINES) this.pane.firstElementChild.remove();
    if (atBottom) this.pane.scrollTop = this.pane.scrollHeight;
  }

  /**
   * Searches for `q`: the server's `logs/search` route when it answers
   * (the log store: every version, not only what the tail holds), else the
   * lines of the tail that contain `q`. An empty `q` returns to the tail.
   */
  async search(q) {
    if (!this.target) return;
    const { app, env } = this.target;
    if (!q) {
      this.filter = "";
      if (this.searching) {
        this.follow(app, env);
        this.activate();
      } else {
        for (const row of this.pane.children) row.hidden = false;
        this.say("Following the live log.");
      }
      return;
    }
    const path = `${appPath(app, env)}/logs/search?q=${encodeURIComponent(q)}&limit=200`;
    this.onCurl(curlFor({ method: "GET", path }));
    let page;
    try {
      page = await request("GET", path);
    } catch (err) {
      if (err?.status === 401) throw err;
      this.filterTail(q, err);
      return;
    }
    this.showResults(q, resultLines(page));
  }

  filterTail(q, why) {
    if (this.searching) {
      const { app, env } = this.target;
      this.follow(app, env);
      this.activate();
    }
    this.filter = q;
    let shown = 0;
    for (const row of this.pane.children) {
      const text = row.lastElementChild?.textContent ?? "";
      row.hidden = !text.toLowerCase().includes(q.toLowerCase());
      if (!row.hidden) shown += 1;
    }
    const reason = why?.status ? `HTTP ${why.status}` : "unavailable";
    this.say(
      `This server has no log search (${reason}): filtering the ${this.pane.childElementCount} lines of the live tail in the browser, ${shown} match "${q}".`,
    );
  }

  showResults(q, lines) {
    this.stop();
    this.searching = true;
    replace(this.pane, lines.map(lineNode));
    this.say(`${lines.length} lines match "${q}" in the log store. Clear the search to follow the live log again.`);
  }
}

function matches(item, filter) {
  return !filter || String(item.line ?? "").toLowerCase().includes(filter.toLowerCase());
}

/** The lines of a search page: an array, or the first array field of an object. */
function resultLines(page) {
  if (Array.isArray(page)) return page;
  for (const key of ["lines", "items", "entries", "results"]) {
    if (Array.isArray(page?.[key])) return page[key];
  }
  return [];
}

function lineNode(item) {
  const text = item.line ?? item.text ?? item.message ?? "";
  return el(
    "div",
    { className: `log-line ${item.stream === "stderr" ? "stderr" : "stdout"}` },
    el("span", { className: "log-ts" }, when(item.ts)),
    item.version !== undefined ? el("span", { className: "log-version" }, `v${item.version}`) : null,
    item.instance !== undefined ? el("span", { className: "log-instance" }, String(item.instance)) : null,
    el("span", { className: "log-text" }, text),
  );
}
