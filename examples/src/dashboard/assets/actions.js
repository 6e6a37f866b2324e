// The actions: upload, deploy, promote, roll back, restart, stop. Each is
// shown as its curl command, and each asks first when it acts on an
// environment named prod.

import { ApiFailure, appPath, request, sha256Of, upload } from "./api.js";
import { curlFor } from "./curl.js";
import { byId, notify } from "./dom.js";

/** The environment that needs a confirmation before anything acts on it. */
export const PROTECTED_ENV = "prod";

let showCurl = () => {};

/** Where commands are shown. */
export function onCurl(fn) {
  showCurl = fn;
}

/**
 * Asks in the confirmation dialog; resolves to true when confirmed.
 * Only asked for prod: elsewhere it resolves to true at once.
 */
export function confirmFor(env, question, curl) {
  if (env !== PROTECTED_ENV) return Promise.resolve(true);
  const dialog = byId("confirm");
  byId("confirm-question").textContent = question;
  byId("confirm-curl").textContent = curl;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

/**
 * Runs one action: shows its curl, asks for prod, calls the API, reports.
 * Resolves to the response body, or null when cancelled or failed.
 */
async function act({ env, question, method, path, body, done }) {
  const curl = curlFor({ method, path, body });
  showCurl(curl);
  if (!(await confirmFor(env, question, curl))) {
    notify("Cancelled: nothing was sent.", "info");
    return null;
  }
  try {
    const result = await request(method, path, body);
    notify(done(result), "ok");
    return result;
  } catch (err) {
    notify(`${question.replace(/\?$/, "")} failed: ${err.message}`, "error");
    if (!(err instanceof ApiFailure)) throw err;
    return null;
  }
}

/**
 * Uploads `file` for `app` in `env` with a progress bar; resolves to the
 * upload's result (sha256, main class, findings) or null.
 */
export async function uploadJar(app, env, file, progress) {
  const sha256 = await sha256Of(file);
  const path = `${appPath(app, env)}/artifacts`;
  const curl = curlFor({ method: "PUT", path, file: file.name, sha256 });
  showCurl(curl);
  if (!(await confirmFor(env, `Upload ${file.name} for ${app} in ${env}?`, curl))) return null;
  progress.value = 0;
  progress.max = file.size || 1;
  try {
    const result = await upload(path, file, sha256, (sent, total) => {
      progress.max = total || 1;
      progress.value = sent;
    });
    notify(`Uploaded ${file.name}: ${result.main_class}, ${result.findings.length} findings.`, "ok");
    return result;
  } catch (err) {
    notify(`Upload failed: ${err.message}`, "error");
    return null;
  }
}

export function deploy(app, env, artifact, config) {
  return act({
    env,
    question: `Deploy ${artifact.slice(0, 12)} to ${app} in ${env}?`,
    method: "POST",
    path: `${appPath(app, env)}/deployments`,
    body: { artifact, config },
    done: (d) => `Deploying ${app} v${d.version} to ${env}: ${d.status}.`,
  });
}

export function promote(app, from, to) {
  return act({
    env: to,
    question: `Promote ${app} from ${from} to ${to}?`,
    method: "POST",
    path: `${appPath(app)}/promote`,
    body: { from, to },
    done: (d) => `Promoting ${app} to ${to} as v${d.version}: the same image, no rebuild.`,
  });
}

export function rollback(app, env, version) {
  return act({
    env,
    question: `Roll back ${app} in ${env}${version ? ` to v${version}` : ""}?`,
    method: "POST",
    path: `${appPath(app, env)}/rollback`,
    body: version ? { version } : {},
    done: (d) => `Rolling back ${app} in ${env}: v${d.version}.`,
  });
}

export function restart(app, env) {
  return act({
    env,
    question: `Restart ${app} in ${env}?`,
    method: "POST",
    path: `${appPath(app, env)}/restart`,
    done: () => `Restarted ${app} in ${env}.`,
  });
}

export function stop(app, env) {
  return act({
    env,
    question: `Stop ${app} in ${env}?`,
    method: "POST",
    path: `${appPath(app, env)}/stop`,
    done: () => `Stopped ${app} in ${env}.`,
  });
}
