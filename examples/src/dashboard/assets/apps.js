// The overview: every app of the tenant, each environment's status,
// version and instance counts.

import { badge, el, replace } from "./dom.js";

/**
 * The ready and desired instance counts of an env, when the server reports
 * them (servers without replicas report none, and nothing is shown). Read
 * from the status route's `runtime` (the backend's view) or the entry
 * itself, as `ready`/`desired`, `ready_instances`/`desired_instances` or
 * `instances: {ready, desired}`.
 */
export function instanceCounts(...sources) {
  for (const s of sources) {
    if (!s || typeof s !== "object") continue;
    const pairs = [
      [s.ready, s.desired],
      [s.ready_instances, s.desired_instances],
      [s.instances?.ready, s.instances?.desired],
    ];
    for (const [ready, desired] of pairs) {
      if (Number.isInteger(ready) && Number.isInteger(desired)) return { ready, desired };
    }
  }
  return null;
}

/** The counts as text, e.g. "2/3 ready", or null. */
export function countsText(counts) {
  return counts ? `${counts.ready}/${counts.desired} ready` : null;
}

/**
 * Renders `model` (app → env → {entry, view}) into `root`. `selected` is
 * `{app, env}` or null; `onSelect(app, env)` is called on a click.
 */
export function renderApps(root, model, selected, onSelect) {
  if (model.size === 0) {
    replace(root, el("p", { className: "empty" }, "No apps yet. Upload a JAR below to create one."));
    return;
  }
  const rows = [];
  for (const [app, envs] of [...model].sort(([a], [b]) => a.localeCompare(b))) {
    const chips = [...envs].sort(([a], [b]) => envOrder(a) - envOrder(b) || a.localeCompare(b));
    rows.push(
      el(
        "li",
        { className: "app", data: { app } },
        el("h3", { className: "app-name" }, app),
        el(
          "div",
          { className: "envs" },
          chips.map(([env, { entry, view }]) => envChip(app, env, entry, view, selected, onSelect)),
        ),
      ),
    );
  }
  replace(root, el("ul", { className: "apps" }, rows));
}

/** dev, staging and prod in that order, then the rest by name. */
function envOrder(env) {
  const known = ["dev", "test", "staging", "prod"].indexOf(env);
  return known === -1 ? 10 : known;
}

function envChip(app, env, entry, view, selected, onSelect) {
  const status = view?.status ?? entry?.status ?? null;
  const version = view?.runtime?.version ?? view?.deployment?.version ?? entry?.version;
  const counts = countsText(instanceCounts(view?.runtime, view, entry));
  const isSelected = selected?.app === app && selected?.env === env;
  return el(
    "button",
    {
      type: "button",
      className: `env${isSelected ? " selected" : ""}${env === "prod" ? " prod" : ""}`,
      data: { app, env },
      on: { click: () => onSelect(app, env) },
    },
    el("span", { className: "env-name" }, env),
    badge(status),
    version !== undefined && version !== null ? el("span", { className: "version" }, `v${version}`) : null,
    counts ? el("span", { className: "counts" }, counts) : null,
  );
}
