// Long-lived responses read with fetch and a ReadableStream rather than
// EventSource, which cannot send the Authorization header.

import { authHeaders, checkAuth, failure } from "./api.js";

/** Calls `onChunk(text)` for each decoded piece of the response body. */
async function readBody(response, onChunk) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    onChunk(decoder.decode(value, { stream: true }));
  }
  onChunk(decoder.decode());
}

/** Splits text into lines across chunk boundaries; `onLine` gets each whole line. */
function lineSplitter(onLine) {
  let pending = "";
  return (chunk) => {
    pending += chunk;
    const lines = pending.split(/\r\n|\n|\r/);
    pending = lines.pop();
    for (const line of lines) onLine(line);
  };
}

async function open(path, accept, signal) {
  const response = await fetch(path, {
    headers: authHeaders({ Accept: accept }),
    cache: "no-store",
    signal,
  });
  if (!response.ok) throw checkAuth(await failure(response));
  return response;
}

/**
 * Reads server-sent events from `path` until the server ends the response:
 * `onEvent(name, data)` with the parsed JSON data of each event.
 */
export async function readSse(path, onEvent, signal) {
  const response = await open(path, "text/event-stream", signal);
  let name = "message";
  let data = [];
  await readBody(
    response,
    lineSplitter((line) => {
      if (line === "") {
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
        name = "message";
        data = [];
      } else if (line.startsWith("event:")) {
        name = line.slice(6).trim();
      } else if (line.startsWith("data:")) {
        data.push(line.slice(5).replace(/^ /, ""));
      }
      // Lines starting with ":" are keep-alives; ids and retries are unused.
    }),
  );
}

/** Reads NDJSON from `path`: `onItem(object)` for each line. */
export async function readNdjson(path, onItem, signal) {
  const response = await open(path, "application/x-ndjson", signal);
  await readBody(
    response,
    lineSplitter((line) => {
      if (line.trim()) onItem(JSON.parse(line));
    }),
  );
}

/**
 * A stream that reconnects: `connect(signal)` is called again after it ends
 * or fails, waiting longer each time (up to 10 s) until one succeeds.
 * `onState("live" | "retrying" | "stopped", error)` says where it is.
 */
export class Reconnecting {
  constructor(connect, onState) {
    this.connect = connect;
    this.onState = onState;
    this.controller = null;
  }

  start() {
    this.stop();
    const controller = new AbortController();
    this.controller = controller;
    this.loop(controller.signal);
  }

  stop() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async loop(signal) {
    let delay = 500;
    while (!signal.aborted) {
      try {
        this.onState("live");
        await this.connect(signal);
        delay = 500;
      } catch (err) {
        if (signal.aborted) return;
        if (err?.status === 401) {
          this.onState("stopped", err);
          return;
        }
        this.onState("retrying", err);
      }
      if (signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
}
