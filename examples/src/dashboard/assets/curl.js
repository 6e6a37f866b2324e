// Every action as the curl command that does the same, so what the
// dashboard does can be scripted. The token is never printed: the command
// reads it from $CAMELEER_TOKEN.

/** Quotes a word for a POSIX shell. */
export function shellQuote(word) {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * The curl command of a request: `method`, `path` (under this origin),
 * and either a JSON `body` or a `file` name sent as raw bytes.
 */
export function curlFor({ method, path, body, file, sha256, accept }) {
  const parts = ["curl", "-sS"];
  if (method !== "GET") parts.push("-X", method);
  // Double quotes: the shell expands the variable.
  parts.push("-H", '"Authorization: Bearer $CAMELEER_TOKEN"');
  if (accept) parts.push("-H", shellQuote(`Accept: ${accept}`));
  if (file !== undefined) {
    parts.push("--data-binary", shellQuote(`@${file}`));
    if (sha256) parts.push("-H", shellQuote(`X-Checksum-Sha256: ${sha256}`));
  }
  if (body !== undefined) {
    parts.push("-H", shellQuote("Content-Type: application/json"));
    parts.push("-d", shellQuote(JSON.stringify(body)));
  }
  parts.push(shellQuote(`${location.origin}${path}`));
  return parts.join(" ");
}
