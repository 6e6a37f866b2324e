// The live log tail of the selected app and environment, and search: the
// server's search route when it has one, else a filter over the tail.

import { appPath, request } from "./api.js";
import { curlFor } from "./curl.js";
import { el, replace, when } from "./dom.js";
import { Reconnecting, readNdjson } from "./streams.js";

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
    this.stream = null;
  }

  /** Follows the logs of `app` in `env` (from the start of what the server keeps). */
  follow(app, env) {
    this.stop();
    this.target = { app, env };
    this.filter = "";
    this.searching = false;
    replace(this.pane);
    this.say("Following the live log.");
    const path = `${appPath(app, env)}/logs?follow=true`;
    this.stream = new Reconnecting(
      async (signal) => {
        // Each connection reads from the start again: begin empty.
        replace(this.pane);
        await readNdjson(path, (item) => this.add(item), signal);
        this.say("The log stream ended (the app is not running); waiting for it to start again.");
      },
      (state, err) => {
        if (state === "retrying") this.say(`Log stream unavailable: ${err?.message ?? err}; retrying.`);
        if (state === "stopped") this.say(`Log stream refused: ${err?.message ?? err}.`);
      },
    );
    this.stream.start();
  }

  /** Reconnects now (after a status change), if following. */
  kick() {
    if (this.stream && !this.searching) this.stream.start();
  }

  stop() {
    this.stream?.stop();
    this.stream = null;
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
    this.stream?.stop();
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
