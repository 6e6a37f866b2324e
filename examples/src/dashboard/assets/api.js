// The API client: the session (tenant and token in sessionStorage, gone when
// the tab closes) and every request, each with `Authorization: Bearer`.

const KEY = "cameleer.session";

/** The signed-in session, `{tenant, token}`, or null. */
export function session() {
  try {
    const value = JSON.parse(sessionStorage.getItem(KEY) ?? "null");
    return value && value.tenant && value.token ? value : null;
  } catch {
    return null;
  }
}

export function signIn(tenant, token) {
  sessionStorage.setItem(KEY, JSON.stringify({ tenant, token }));
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** A failed request: the HTTP status and the API's `{error: {code, message}}`. */
export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(`${message} (${code}, HTTP ${status})`);
    this.status = status;
    this.code = code;
  }
}

const seg = encodeURIComponent;

/** The path of the tenant's apps. */
export function tenantPath() {
  return `/api/v1/tenants/${seg(session()?.tenant ?? "")}`;
}

/** The path of one app, or of one app in one environment. */
export function appPath(app, env) {
  const base = `${tenantPath()}/apps/${seg(app)}`;
  return env === undefined ? base : `${base}/envs/${seg(env)}`;
}

/** The request headers every call sends. */
export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session()?.token ?? ""}`, ...extra };
}

/** Turns a non-2xx response into an ApiFailure, reading the envelope if any. */
export async function failure(response) {
  let code = "http_error";
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
    }
  } catch {
    // Not JSON (a proxy's page, an empty 404): keep the status text.
  }
  return new ApiFailure(response.status, code, message);
}

let onUnauthorized = () => {};

/** What to do when the server refuses the token (401): sign out. */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** Reports a 401 and returns the failure, for callers that throw it. */
export function checkAuth(err) {
  if (err instanceof ApiFailure && err.status === 401) onUnauthorized(err);
  return err;
}

/** A JSON request; resolves to the parsed body, rejects with ApiFailure. */
export async function request(method, path, body) {
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw checkAuth(await failure(response));
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * Uploads a file with XMLHttpRequest, whose upload events give progress
 * (fetch has none for request bodies). `onProgress(sent, total)`.
 */
export function upload(path, file, sha256, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", path);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader("Content-Type", "application/java-archive");
    if (sha256) xhr.setRequestHeader("X-Checksum-Sha256", sha256);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size, file.size);
        resolve(body);
      } else {
        const e = body?.error ?? {};
        reject(checkAuth(new ApiFailure(xhr.status, e.code ?? "http_error", e.message ?? xhr.statusText)));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiFailure(0, "network", "the upload did not reach the server")));
    xhr.send(file);
  });
}

/** The hex SHA-256 of a file, or null where the browser cannot (no secure context). */
export async function sha256Of(file) {
  if (!globalThis.crypto?.subtle) return null;
  const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
