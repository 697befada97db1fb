// One rollout, live: its state in words, a bar per wave, each gate beside its threshold, rejections and
// failures by reason, the audit trail, and the operator's actions (for a token whose role allows them).

import { get, post } from "./api.js";
import { bar, chip, h, notice, percent, short, span, table, when } from "./dom.js";

/** The gate a stop's cause names, and the numbers it stopped on. */
function tripped(rollout) {
  const cause = rollout.cause;
  if (!cause) return null;
  if (cause.cause === "analysis_failed") {
    return { gate: `analysis ${cause.analysis}`, numbers: `it measured ${cause.value}, which is not ${cause.condition}: ${cause.failures} failed measurements, ${cause.limit} tolerated (query: ${cause.query})` };
  }
  if (cause.cause === "analysis_inconclusive") {
    return { gate: `analysis ${cause.analysis}`, numbers: `it could not be measured: ${cause.detail}; the rollout waits for data (query: ${cause.query})` };
  }
  const gate = { failure_threshold: "failure", rejection_threshold: "rejection", success_gate: "success" }[cause.cause];
  if (!gate) return null;
  const numbers = {
    failure: () => `${cause.failed} of ${cause.finished} finished devices failed (${percent(cause.failed / Math.max(cause.finished, 1))}), above ${percent(cause.threshold)}`,
    rejection: () => `${cause.rejected} of ${cause.finished} devices rejected the image (${percent(cause.rejected / Math.max(cause.finished, 1))}), above ${percent(cause.threshold)}`,
    success: () => `${cause.succeeded} of ${cause.eligible} devices succeeded (${percent(cause.succeeded / Math.max(cause.eligible, 1))}), below ${percent(cause.required)}`,
  }[gate]();
  return { gate, numbers };
}

const GATE_WORDS = {
  success: ["succeeded, of the wave's devices that could", "at least"],
  failure: ["failed or timed out, of those finished", "at most"],
  rejection: ["rejected the image, of those that answered", "at most"],
};

function gates(s) {
  const trip = tripped(s.rollout);
  const rows = s.gates.map((g) => {
    const [what, bound] = GATE_WORDS[g.gate];
    const isTripped = trip && trip.gate === g.gate;
    let state;
    if (isTripped) state = h("strong", { class: "tripped" }, "TRIPPED");
    else if (g.gate === "success") state = h("span", { class: "muted" }, "judged when the wave's devices are done");
    else if (g.observed > g.threshold) state = h("strong", { class: "tripped" }, "over (not enough finished yet to stop)");
    else state = h("span", { class: "ok" }, "within");
    return [h("span", { class: `gate-${g.gate}` }, g.gate), what, percent(g.observed), `${bound} ${percent(g.threshold)}`, state];
  });
  return h(
    "section",
    { class: "card", id: "gates" },
    h("h2", {}, "Gates"),
    trip ? h("p", { class: "notice error", role: "alert" }, `The ${trip.gate} gate tripped: ${trip.numbers}.`) : null,
    table("Gates", ["Gate", "Counts", "Observed", "Threshold", "State"], rows, "No gate counts yet."),
    analyses(s),
    soak(s),
  );
}

/** The analysis gates of the wave being measured: each query's measurements beside what it tolerates. */
function analyses(s) {
  if (!s.analyses.length) return null;
  const cause = s.rollout.cause || {};
  const rows = s.analyses.map((a) => {
    let state = h("span", { class: "ok" }, a.measured < a.count ? "measuring" : "passed");
    if (cause.cause === "analysis_failed" && cause.analysis === a.name) state = h("strong", { class: "tripped" }, "TRIPPED");
    if (cause.cause === "analysis_inconclusive" && cause.analysis === a.name) state = h("strong", { class: "tripped" }, "NO ANSWER: paused, never passed for want of data");
    return [a.name, h("code", {}, a.query), a.condition, `${a.measured} of ${a.count}`, `${a.failed} (${a.failure_limit} tolerated)`, a.last_value ?? "", state];
  });
  return h(
    "div",
    { id: "analyses" },
    h("h3", {}, `Analysis gates of wave ${s.analyses[0].wave + 1}`),
    table("Analysis gates", ["Analysis", "Query", "Must be", "Measured", "Failed", "Last value", "State"], rows),
  );
}

/** The time until the soak of the wave in progress ends, from the controller's clock. */
function soak(s) {
  const r = s.rollout;
  if (r.stage !== "soaking" || !r.until) return null;
  const left = r.until - s.now;
  return h("p", { id: "soak" }, left > 0 ? `Wave ${r.wave + 1} soaks: ${span(left)} left (until ${when(r.until)}).` : `Wave ${r.wave + 1}'s soak is over.`);
}

function waves(s) {
  const current = s.rollout.wave;
  return h(
    "section",
    { class: "card", id: "waves" },
    h("h2", {}, "Waves"),
    h(
      "ol",
      { class: "waves" },
      s.waves.map((w) => {
        const i = w.number - 1;
        const here = current === i && ["active", "paused"].includes(s.rollout.state);
        const state = w.passed_at ? `passed ${when(w.passed_at)}` : w.started_at ? `started ${when(w.started_at)}` : "not started";
        return h(
          "li",
          { class: here ? "current" : "", "data-wave": w.number },
          h("h3", {}, `Wave ${w.number}`, here ? h("span", { class: "badge" }, "in progress") : null),
          h("p", { class: "muted" }, `${w.devices} devices; ${state}`),
          bar(w.counts, w.devices, `Wave ${w.number}`),
        );
      }),
    ),
  );
}

function reasons(s) {
  const rows = s.reasons.map((g) => [chip(g.outcome), g.text, g.devices, g.examples.map((d, i) => [i ? ", " : "", h("a", { href: `#/devices/${encodeURIComponent(d)}` }, d)])]);
  return h("section", { class: "card", id: "reasons" }, h("h2", {}, "Rejections and failures by reason"), table("Reasons", ["Outcome", "Reason", "Devices", "For example"], rows, "No device has rejected or failed."));
}

function audit(entries) {
  const rows = entries
    .slice()
    .reverse()
    .map((e) => [when(e.at), e.actor, e.action, e.reason]);
  return h("section", { class: "card", id: "audit" }, h("h2", {}, "Audit trail"), table("Audit trail", ["When", "Who", "What", "Why"], rows, "Nothing yet."));
}

/** The actions a rollout's state allows; the engine has the last word, and its refusal is shown. */
function actionsFor(r, counts) {
  const over = r.state === "finished" || r.state === "aborted";
  const retryable = (counts.failed || 0) + (counts.timed_out || 0) > 0;
  const out = [];
  if (r.state === "created") out.push("start");
  if (r.state === "active" && r.stage === "awaiting_approval") out.push("approve");
  if (r.state === "active") out.push("pause");
  if (r.state === "paused") out.push("resume");
  if (retryable && (r.state === "paused" || r.state === "active" || r.state === "finished")) out.push("retry");
  if (!over) out.push("abort");
  if (r.state !== "finished") out.push("cancel");
  return out;
}

const ACTION_HELP = {
  start: "Start the first wave.",
  pause: "Stop commanding devices until resumed.",
  resume: "Go on after a pause; the thresholds count from here.",
  approve: "Let the waiting wave start.",
  retry: "Command the failed and timed-out devices again.",
  abort: "Stop for good: devices not yet commanded are cancelled.",
  cancel: "Abort, and tell the commanded devices to stop what they have not begun to install.",
};

function actions(ctx, s, refresh) {
  if (!ctx.canOperate) return h("p", { class: "muted", id: "actions" }, `Your token's role (${ctx.role}) may watch this rollout, not act on it.`);
  const out = h("div", { id: "action-result" });
  const buttons = actionsFor(s.rollout, s.counts).map((a) =>
    h(
      "button",
      {
        id: `action-${a}`,
        class: a === "abort" || a === "cancel" ? "danger" : "",
        title: ACTION_HELP[a],
        onclick: async () => {
          const reason = await ctx.ask(`${a[0].toUpperCase()}${a.slice(1)} rollout ${s.rollout.id}`, ACTION_HELP[a]);
          if (reason === null) return;
          try {
            await post(`/api/v1/rollouts/${s.rollout.id}/${a}`, { reason });
            out.replaceChildren(notice("ok", `${a}: done.`));
            refresh();
          } catch (e) {
            out.replaceChildren(notice("error", `${a}: ${e.message}`));
          }
        },
      },
      a,
    ),
  );
  const none = buttons.length ? null : h("p", { class: "muted" }, "No action applies to this rollout now.");
  return h("section", { class: "card", id: "actions" }, h("h2", {}, "Actions"), h("div", { class: "buttons" }, buttons), none, out);
}

/** The rollout page. */
export async function rollout(ctx, id, refresh) {
  const [s, entries] = await Promise.all([get(`/api/v1/rollouts/${id}?jobs=false&reasons=true`), get(`/api/v1/audit?rollout=${id}`)]);
  const total = Object.values(s.counts).reduce((a, b) => a + b, 0);
  const image = s.image ? `${s.image.software_version} (${short(s.image.sha256)})` : short(s.rollout.image);
  return h(
    "div",
    {},
    h("p", {}, h("a", { href: "#/rollouts" }, "Rollouts"), " / ", id),
    h("h1", {}, `Rollout ${id}`),
    h("p", { class: `summary state-${s.rollout.state}`, id: "summary" }, h("b", {}, s.rollout.state), `: ${s.summary}`),
    h("p", {}, `Image ${image}, created by ${s.rollout.created_by} ${when(s.rollout.created_at)}.`),
    h("section", { class: "card", id: "counts" }, h("h2", {}, "All devices"), bar(s.counts, total, "All devices")),
    actions(ctx, s, refresh),
    waves(s),
    gates(s),
    reasons(s),
    audit(entries),
  );
}
