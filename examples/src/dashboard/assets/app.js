// The dashboard's entry point: sign-in, the tenant's model, the live
// events stream, and the wiring of every control.

import * as actions from "./actions.js";
import { appPath, request, session, signIn, signOut, tenantPath, whenUnauthorized } from "./api.js";
import { renderApps } from "./apps.js";
import { addActivity, describeReason, renderHistory, renderSummary } from "./detail.js";
import { byId, el, notify, replace } from "./dom.js";
import { LogView } from "./logs.js";
import { Reconnecting, readSse } from "./streams.js";

const DEFAULT_CONFIG = { resources: { memory_mb: 256, cpu_millis: 500 } };

/** app → env → {entry (from the list), view (from the status route)} */
const model = new Map();
let selected = null;
let events = null;
const logs = new LogView(byId("log-pane"), byId("log-note"), showCurl);

function showCurl(command) {
  byId("curl").textContent = command;
}
actions.onCurl(showCurl);

function slot(app, env) {
  if (!model.has(app)) model.set(app, new Map());
  const envs = model.get(app);
  if (!envs.has(env)) envs.set(env, { entry: null, view: null });
  return envs.get(env);
}

function render() {
  renderApps(byId("apps"), model, selected, select);
  if (!selected) return;
  const { view } = slot(selected.app, selected.env);
  renderSummary(byId("summary"), view);
}

// ---- data ----

/** Re-reads every app and environment of the tenant, then each status. */
async function refreshAll() {
  const { apps } = await request("GET", `${tenantPath()}/apps`);
  const seen = new Set();
  for (const entry of apps) {
    slot(entry.app, entry.env).entry = entry;
    seen.add(`${entry.app}/${entry.env}`);
  }
  for (const [app, envs] of model) {
    for (const env of envs.keys()) if (!seen.has(`${app}/${env}`)) envs.delete(env);
    if (envs.size === 0) model.delete(app);
  }
  render();
  await Promise.all(apps.map((e) => refreshOne(e.app, e.env)));
}

/** Re-reads one environment's status (and history, when it is selected). */
async function refreshOne(app, env) {
  const path = appPath(app, env);
  const isSelected = selected?.app === app && selected?.env === env;
  const [view, history] = await Promise.all([
    request("GET", path),
    isSelected ? request("GET", `${path}/deployments`).catch(() => []) : null,
  ]);
  slot(app, env).view = view;
  render();
  if (isSelected && history) renderHistory(byId("history"), history);
  if (isSelected && hasInstance(view)) logs.activate();
}

/** Whether the backend runs (or ran) an instance whose log can be read. */
function hasInstance(view) {
  const status = view?.runtime?.status;
  return status === "STARTING" || status === "RUNNING" || status === "FAILED";
}

const pending = new Map();

/** Refreshes an env soon, once per burst of events. */
function refreshSoon(app, env) {
  const key = `${app}/${env}`;
  if (pending.has(key)) return;
  pending.set(
    key,
    setTimeout(() => {
      pending.delete(key);
      refreshOne(app, env).catch(report);
    }, 150),
  );
}

function report(err) {
  // A refused token has signed the user out already, with its own message.
  if (err?.status === 401) return;
  notify(err?.message ?? String(err), "error");
}

// ---- live events ----

function onEvent(name, event) {
  if (name === "lagged") {
    refreshAll().catch(report);
    return;
  }
  const where = event.app;
  if (!where || where.tenant !== session()?.tenant) return;
  const isNew = !model.get(where.app)?.has(where.env);
  const isSelected = selected?.app === where.app && selected?.env === where.env;
  if (name === "status") {
    if (isNew) refreshAll().catch(report);
    else refreshSoon(where.app, where.env);
    if (isSelected) {
      const reason = event.reason ? ` (${describeReason(event.reason)})` : "";
      addActivity(byId("activity"), event.at, `v${event.version} ${event.status}${reason}`);
    }
  } else if (isSelected && name === "build_progress") {
    addActivity(byId("activity"), event.at, `v${event.version} build: ${event.message}`);
  } else if (isSelected && name === "unhealthy") {
    addActivity(byId("activity"), event.at, `v${event.version} unhealthy: ${event.reason}`);
  }
}

function setLive(state, err) {
  const live = byId("live");
  live.hidden = false;
  live.dataset.state = state;
  live.textContent = state === "live" ? "live" : state === "retrying" ? "reconnecting…" : "offline";
  live.title = err ? String(err.message ?? err) : "";
}

function startEvents() {
  let first = true;
  events = new Reconnecting(
    async (signal) => {
      // Whatever happened while disconnected: read it all again.
      if (!first) await refreshAll();
      first = false;
      await readSse(`${tenantPath()}/events`, onEvent, signal);
    },
    setLive,
  );
  events.start();
}

// ---- selection ----

function select(app, env) {
  selected = { app, env };
  byId("detail").hidden = false;
  byId("pick").hidden = true;
  byId("detail-title").textContent = `${app} · ${env}`;
  byId("detail").classList.toggle("prod", env === actions.PROTECTED_ENV);
  byId("deploy-app").value = app;
  byId("deploy-env").value = env;
  replace(byId("activity"));
  replace(byId("history"));
  byId("log-query").value = "";
  render();
  refreshOne(app, env).catch(report);
  logs.follow(app, env);
}

// ---- sign-in ----

async function enter() {
  const s = session();
  byId("signin").hidden = true;
  byId("workspace").hidden = false;
  byId("sign-out").hidden = false;
  byId("who").hidden = false;
  byId("who").textContent = `tenant ${s.tenant}`;
  try {
    await refreshAll();
  } catch (err) {
    report(err);
    return;
  }
  startEvents();
}

function leave(message) {
  events?.stop();
  logs.stop();
  signOut();
  model.clear();
  selected = null;
  byId("signin").hidden = false;
  byId("workspace").hidden = true;
  byId("sign-out").hidden = true;
  byId("who").hidden = true;
  byId("live").hidden = true;
  byId("detail").hidden = true;
  byId("pick").hidden = false;
  if (message) notify(message, "error");
}

whenUnauthorized((err) => leave(`Signed out: the server refused the token (${err.message}).`));

byId("signin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const tenant = byId("signin-tenant").value.trim();
  const token = byId("signin-token").value.trim();
  if (!tenant || !token) {
    notify("Enter a tenant and a token.", "error");
    return;
  }
  signIn(tenant, token);
  byId("signin-token").value = "";
  byId("notice").hidden = true;
  await enter();
});

byId("sign-out").addEventListener("click", () => leave());

// ---- actions ----

function target() {
  return { app: byId("deploy-app").value.trim(), env: byId("deploy-env").value.trim() };
}

byId("upload-button").addEventListener("click", async () => {
  const file = byId("upload-file").files[0];
  const { app, env } = target();
  if (!file || !app || !env) {
    notify("Choose a JAR, an app and an environment first.", "error");
    return;
  }
  const result = await actions.uploadJar(app, env, file, byId("upload-progress"));
  if (!result) return;
  byId("deploy-artifact").value = result.sha256;
  const dl = byId("upload-result");
  replace(
    dl,
    el("dt", {}, "sha256"),
    el("dd", { className: "mono wrap", id: "uploaded-sha" }, result.sha256),
    el("dt", {}, "main class"),
    el("dd", { className: "mono" }, result.main_class),
    el("dt", {}, "size"),
    el("dd", {}, `${result.size} bytes`),
    el("dt", {}, "findings"),
    el("dd", {}, result.findings.length ? result.findings.map((f) => f.message ?? JSON.stringify(f)).join("; ") : "none"),
  );
  dl.hidden = false;
});

byId("deploy-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const { app, env } = target();
  const artifact = byId("deploy-artifact").value.trim();
  let config;
  try {
    config = JSON.parse(byId("deploy-config").value || "{}");
  } catch (err) {
    notify(`The config is not JSON: ${err.message}`, "error");
    return;
  }
  if (!app || !env || !artifact) {
    notify("An app, an environment and an artifact are needed to deploy.", "error");
    return;
  }
  const d = await actions.deploy(app, env, artifact, config);
  if (d) {
    if (!model.get(app)?.has(env)) await refreshAll().catch(report);
    select(app, env);
  }
});

function onSelected(fn) {
  return async () => {
    if (!selected) return;
    const { app, env } = selected;
    if (await fn(app, env)) refreshSoon(app, env);
  };
}

byId("restart-button").addEventListener("click", onSelected((app, env) => actions.restart(app, env)));
byId("stop-button").addEventListener("click", onSelected((app, env) => actions.stop(app, env)));
byId("rollback-button").addEventListener(
  "click",
  onSelected((app, env) => {
    const version = Number.parseInt(byId("rollback-version").value, 10);
    return actions.rollback(app, env, Number.isInteger(version) ? version : undefined);
  }),
);
byId("promote-button").addEventListener(
  "click",
  onSelected(async (app, env) => {
    const to = byId("promote-to").value.trim();
    if (!to) {
      notify("Name the environment to promote to.", "error");
      return null;
    }
    const d = await actions.promote(app, env, to);
    if (d && !model.get(app)?.has(to)) await refreshAll().catch(report);
    return d;
  }),
);

byId("log-search").addEventListener("submit", (e) => {
  e.preventDefault();
  logs.search(byId("log-query").value.trim()).catch(report);
});

byId("copy-curl").addEventListener("click", () => {
  navigator.clipboard?.writeText(byId("curl").textContent).then(
    () => notify("Copied the command.", "ok"),
    () => notify("The browser refused the clipboard; select the command instead.", "error"),
  );
});

byId("confirm-yes").addEventListener("click", () => byId("confirm").close("yes"));
byId("confirm-no").addEventListener("click", () => byId("confirm").close("no"));

// ---- start ----

byId("deploy-config").value = JSON.stringify(DEFAULT_CONFIG, null, 2);
// Every control is wired: tools (and tests) can tell the page is usable.
document.documentElement.dataset.ready = "yes";
if (session()) enter();
