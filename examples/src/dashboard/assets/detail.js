// One app in one environment: what runs now, and its history with the
// typed reasons of every status change.

import { badge, el, replace, when } from "./dom.js";
import { countsText, instanceCounts } from "./apps.js";

/**
 * A status reason (`{code, …}`, the API's `StatusReason`) in words. Every
 * code the server can send has its sentence; an unknown one (a newer
 * server) is shown by its code and fields.
 */
export function describeReason(reason) {
  if (!reason || typeof reason !== "object") return "";
  const r = reason;
  switch (r.code) {
    case "exited":
      return r.exit_code === undefined ? "the app exited" : `the app exited with code ${r.exit_code}`;
    case "oom_killed":
      return "killed by the kernel: over the container's memory limit";
    case "jvm_out_of_memory":
      return "the JVM ran out of memory (heap, metaspace or direct memory)";
    case "health_timeout":
      return `not healthy within ${r.after_secs} s${r.last_probe ? `: ${r.last_probe}` : ""}`;
    case "unhealthy":
      return `health check failing: ${r.detail}`;
    case "image_pull_failed":
      return `the image could not be pulled: ${r.detail}`;
    case "crash_loop": {
      const restarts = r.restarts === undefined ? "" : ` (${r.restarts} restarts)`;
      const last = r.last ? `; last: ${describeReason(r.last)}` : "";
      return `crash loop${restarts}${last}`;
    }
    case "start_refused":
      return `the runtime refused to start it: ${r.detail}`;
    case "gone":
      return "removed outside the platform";
    case "build_failed":
      return `the image build failed: ${r.detail}`;
    case "stopped_on_request":
      return "stopped on request";
    case "stopped_externally":
      return "stopped outside the platform";
    case "superseded":
      return `replaced by v${r.by_version}`;
    case "interrupted":
      return `interrupted by a controller restart${r.detail ? `: ${r.detail}` : ""}`;
    case "backend_unavailable":
      return `the backend failed: ${r.detail}`;
    case "promoted":
      return `promoted from deployment ${String(r.from).slice(0, 8)}`;
    case "rolled_back":
      return `rolled back to v${r.to_version}`;
    case "instances_not_ready":
      return `${r.ready} of ${r.desired} instances ready, ${Math.max(r.desired - r.ready, 0)} not`;
    case "other":
      return r.message;
    default: {
      const { code, ...rest } = r;
      const fields = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
      return `${code}${fields}`;
    }
  }
}

/** A reason as its code (the stable key) and its sentence. */
function reasonNode(reason) {
  if (!reason) return null;
  return el(
    "span",
    { className: "reason" },
    el("code", { className: "reason-code" }, reason.code),
    " ",
    describeReason(reason),
  );
}

function sourceText(source) {
  switch (source?.kind) {
    case "build":
      return "built from the JAR";
    case "promotion":
      return `promoted from ${String(source.from).slice(0, 8)}`;
    case "rollback":
      return `rollback to v${source.to_version}`;
    default:
      return source?.kind ?? "";
  }
}

/** The summary of what runs: status, version, counts, image, reason. */
export function renderSummary(root, view) {
  const d = view?.deployment;
  const runtime = view?.runtime;
  const counts = countsText(instanceCounts(runtime, view));
  const reason = runtime?.reason ?? d?.history?.at(-1)?.reason;
  replace(
    root,
    el(
      "dl",
      { className: "summary" },
      el("dt", {}, "status"),
      el("dd", { id: "current-status" }, badge(view?.status ?? null)),
      el("dt", {}, "version"),
      el("dd", {}, runtime?.version ?? d?.version ?? "—"),
      counts ? [el("dt", {}, "instances"), el("dd", { className: "counts" }, counts)] : null,
      el("dt", {}, "image"),
      el("dd", { className: "mono wrap" }, d?.image ?? "—"),
      el("dt", {}, "artifact"),
      el("dd", { className: "mono wrap" }, d?.artifact ?? "—"),
      reason ? [el("dt", {}, "reason"), el("dd", {}, reasonNode(reason))] : null,
    ),
  );
}

/** The history: every version, newest first, each with its status changes. */
export function renderHistory(root, deployments) {
  if (!deployments.length) {
    replace(root, el("p", { className: "empty" }, "No deployments yet."));
    return;
  }
  replace(
    root,
    el(
      "ol",
      { className: "history" },
      deployments.map((d, i) =>
        el(
          "li",
          { data: { version: d.version } },
          el(
            "details",
            { open: i === 0 },
            el(
              "summary",
              {},
              el("strong", {}, `v${d.version}`),
              " ",
              badge(d.status),
              " ",
              el("span", { className: "muted" }, `${sourceText(d.source)} · ${when(d.created_at)}`),
            ),
            el(
              "ol",
              { className: "changes" },
              d.history.map((c) =>
                el(
                  "li",
                  {},
                  el("span", { className: "muted" }, when(c.at)),
                  " ",
                  badge(c.status),
                  " ",
                  reasonNode(c.reason),
                  c.output ? el("pre", { className: "output" }, c.output) : null,
                ),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

/** Appends a line to the activity feed (events, build output), newest last. */
export function addActivity(root, at, text) {
  root.append(el("li", {}, el("span", { className: "muted" }, when(at)), " ", text));
  while (root.childElementCount > 200) root.firstElementChild.remove();
  root.scrollTop = root.scrollHeight;
}
