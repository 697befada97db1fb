// The console's pages but one rollout's (rollout.js): the fleet, one device, the rollouts, the images, and a
// new rollout with its plan. Each page is a function of what the API answers; the page holds no state.

import { get, post } from "./api.js";
import { bar, h, notice, percent, short, table, when } from "./dom.js";

/** Rows a table shows at most; a filter narrows the rest. */
const ROWS = 500;

function deviceLink(id) {
  return h("a", { href: `#/devices/${encodeURIComponent(id)}` }, id);
}

function rolloutLink(id) {
  return h("a", { href: `#/rollouts/${id}` }, id);
}

function online(d) {
  return h("span", { class: d.online ? "on" : "off" }, h("span", { class: "dot", "aria-hidden": "true" }), d.online ? "online" : "offline");
}

function groups(title, counts) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  return h("section", { class: "card" }, h("h3", {}, title), h("ul", { class: "counts" }, entries.map(([k, n]) => h("li", {}, h("span", {}, k), h("b", {}, n)))));
}

/** The fleet: devices by model, hardware level, version and online state, and a filter the API applies. */
export async function fleet(ctx) {
  const filter = ctx.query.get("q") || "";
  const q = encodeURIComponent(filter);
  const [summary, devices] = await Promise.all([get(`/api/v1/fleet/summary?filter=${q}`), get(`/api/v1/devices?filter=${q}&limit=${ROWS}`)]);
  const input = h("input", {
    id: "fleet-filter",
    type: "search",
    value: filter,
    placeholder: "model, level, version, label, online...",
    "aria-label": "Filter devices",
    onchange: (e) => ctx.go(`#/fleet?q=${encodeURIComponent(e.target.value)}`),
  });
  const rows = devices.map((d) => {
    const hello = d.hello || {};
    return [deviceLink(d.id), hello.model || "", hello.part_number || "", hello.hardware_level ?? "", hello.software_version || "", online(d), when(d.last_seen)];
  });
  const levels = Object.fromEntries(Object.entries(summary.by_hardware_level).map(([k, n]) => [k === "unknown" ? k : `level ${k}`, n]));
  return h(
    "div",
    {},
    h("h1", {}, "Fleet"),
    h("p", {}, `${summary.devices} devices, ${summary.online} online.`),
    h(
      "div",
      { class: "cards" },
      groups("By model", summary.by_model),
      groups("By hardware level", levels),
      groups("By version", summary.by_software_version),
      groups("Online", { online: summary.online, offline: summary.devices - summary.online }),
    ),
    h("label", { class: "filter" }, "Filter ", input),
    h("p", { class: "muted", id: "shown" }, summary.matching > devices.length ? `Showing ${devices.length} of ${summary.matching} matching: narrow the filter for the rest.` : `${summary.matching} shown.`),
    table("Devices", ["Device", "Model", "Part number", "Hardware level", "Version", "State", "Last seen"], rows, "No device matches."),
  );
}

/** A job's phase in words, with its reason where it has one. */
export function phaseWords(phase) {
  const p = phase.phase;
  if (p === "running") return `running: ${phase.state}${phase.progress == null ? "" : ` ${phase.progress}%`}`;
  if (p === "succeeded") return `succeeded, running ${phase.running_version}${phase.override_used ? " (override)" : ""}`;
  if (p === "timed_out") return "timed out";
  return p;
}

/** One device: its hello, and its jobs in every rollout with their outcomes and reasons. */
export async function device(ctx, id) {
  const d = await get(`/api/v1/devices/${encodeURIComponent(id)}`);
  const hello = d.device.hello;
  const facts = hello
    ? [
        ["Model", hello.model || "not configured"],
        ["Part number", hello.part_number],
        ["Hardware level", `${hello.hardware_level} (from ${hello.hardware_level_source.replace("_", " ")})`],
        ["Software version", hello.software_version],
        ["Minimum software version", hello.minimum_software_version],
        ["Agent", hello.agent_version],
        ["Labels", (hello.labels || []).join(", ") || "none"],
        ["Time zone", hello.timezone || "not reported"],
      ]
    : [["Hello", "never said hello"]];
  facts.push(["State", d.device.online ? "online" : "offline"], ["Last seen", when(d.device.last_seen)]);
  const jobs = d.jobs.map((j) => [rolloutLink(j.rollout), `wave ${j.wave + 1}`, `attempt ${j.attempt}`, phaseWords(j.phase), j.reason_text || "", when(j.updated_at)]);
  return h(
    "div",
    {},
    h("p", {}, h("a", { href: "#/fleet" }, "Fleet"), " / ", id),
    h("h1", {}, `Device ${id}`),
    h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h2", {}, "What its hellos changed"),
    h(
      "div",
      { id: "changes" },
      table(
        "What its hellos changed",
        ["When", "Software version", "Hardware level"],
        d.device.changes.slice().reverse().map((c) => [
          when(c.at),
          c.from_version === c.to_version ? c.to_version : `from ${c.from_version} to ${c.to_version}`,
          c.from_level === c.to_level ? c.to_level : `from ${c.from_level} to ${c.to_level}`,
        ]),
        "Nothing since the controller first heard it: the same version and level in every hello.",
      ),
    ),
    h("h2", {}, "Jobs"),
    table("Jobs", ["Rollout", "Wave", "Attempt", "Phase", "Reason", "Updated"], jobs, "In no rollout yet."),
  );
}

/** Every rollout: state, image, current wave, counts by outcome. */
export async function rollouts(ctx) {
  const list = await get("/api/v1/rollouts");
  const rows = list
    .slice()
    .reverse()
    .map((r) => {
      const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
      const wave = r.rollout.wave === undefined ? "" : `wave ${r.rollout.wave + 1}/${r.rollout.waves.length}`;
      return [rolloutLink(r.rollout.id), r.rollout.state, wave, short(r.rollout.image), bar(r.counts, total, `Rollout ${r.rollout.id}`), when(r.rollout.created_at)];
    });
  return h(
    "div",
    {},
    h("h1", {}, "Rollouts"),
    ctx.canOperate ? h("p", {}, "Start one from an image: ", h("a", { href: "#/images" }, "Images"), ".") : null,
    table("Rollouts", ["Rollout", "State", "Wave", "Image", "Devices", "Created"], rows, "No rollout yet."),
  );
}

/** The images: header fields, signer, and where each is rolled out. */
export async function images(ctx) {
  const [list, rolls] = await Promise.all([get("/api/v1/images"), get("/api/v1/rollouts")]);
  const rows = list.map((i) => {
    const used = rolls.filter((r) => r.rollout.image === i.sha256).map((r) => [rolloutLink(r.rollout.id), ` (${r.rollout.state}) `]);
    return [
      h("code", { title: i.sha256 }, short(i.sha256)),
      i.software_version,
      i.hardware_levels ? i.hardware_levels.join(", ") : "any (no hardware-level field)",
      `${i.size} bytes`,
      h("span", { title: i.payload_sha256 }, `${i.payload_len} bytes, SHA-256 ${short(i.payload_sha256)}`),
      i.signed_by ? h("span", { class: "signed" }, `signed by key ${i.signed_by}`) : h("span", { class: "unsigned" }, "unsigned (lab)"),
      used.length ? used : "nowhere yet",
      ctx.canOperate ? h("a", { href: `#/new/${i.sha256}`, class: "button" }, "New rollout") : null,
      when(i.added_at),
    ];
  });
  return h(
    "div",
    {},
    h("h1", {}, "Images"),
    table("Images", ["Image", "Version", "Hardware levels", "Size", "Payload", "Signature", "Rolled out in", "", "Added"], rows, "No image yet: `bindwave image add FILE.bind`."),
  );
}

/** Wave sizes as operators write them (`1,10%,100%`) as the API takes them. */
function waveSpecs(text) {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => (s.endsWith("%") ? { size: { percent: Number(s.slice(0, -1)) } } : { size: { count: Number(s) } }));
}

function list(text) {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A new rollout of an image: its targets and waves, the plan shown before it is created. */
export async function create(ctx, image) {
  const fields = {
    labels: h("input", { id: "new-labels", placeholder: "site=munich, pilot" }),
    models: h("input", { id: "new-models", placeholder: "CP400" }),
    devices: h("input", { id: "new-devices", placeholder: "phone-0001, phone-0002" }),
    waves: h("input", { id: "new-waves", value: "1,10%,100%" }),
    soak: h("input", { id: "new-soak", type: "number", min: "0", value: "0" }),
  };
  const out = h("div", { id: "plan" });
  const spec = () => {
    const targets = { labels: list(fields.labels.value), models: list(fields.models.value), devices: list(fields.devices.value) };
    return { image, targets, waves: waveSpecs(fields.waves.value), gates: { soak_secs: Number(fields.soak.value) || 0 } };
  };
  async function plan() {
    out.replaceChildren(notice("info", "Planning..."));
    try {
      const p = await post("/api/v1/rollouts/plan", { spec: spec() });
      out.replaceChildren(planView(p), h("button", { id: "create", class: "primary", onclick: createIt }, "Create the rollout"));
    } catch (e) {
      out.replaceChildren(notice("error", e.message));
    }
  }
  async function createIt() {
    try {
      const r = await post("/api/v1/rollouts", { spec: spec() });
      ctx.go(`#/rollouts/${r.id}`);
    } catch (e) {
      out.append(notice("error", e.message));
    }
  }
  const row = (label, input, help) => h("label", { class: "field" }, h("span", {}, label), input, h("small", {}, help));
  return h(
    "div",
    {},
    h("h1", {}, "New rollout"),
    h("p", {}, "Image ", h("code", {}, image)),
    h(
      "div",
      { class: "form" },
      row("Labels", fields.labels, "devices carrying every one of these"),
      row("Models", fields.models, "any of these"),
      row("Devices", fields.devices, "only these"),
      row("Waves", fields.waves, "cumulative sizes: a count or a percentage of the targets"),
      row("Soak (seconds)", fields.soak, "how long each wave is watched after it passes, before the next starts"),
      h("button", { id: "plan-it", onclick: plan }, "Plan"),
    ),
    out,
  );
}

/** A plan: its waves with their devices and predicted rejections by reason, and the canary's cohorts. */
export function planView(p) {
  const total = p.waves.reduce((n, w) => n + w.devices.length, 0);
  const reasons = new Map();
  for (const w of p.waves) for (const [r, n] of Object.entries(w.prediction.reasons)) reasons.set(r, (reasons.get(r) || 0) + n);
  const rows = p.waves.map((w, i) => {
    const t = p.timing && p.timing.waves[i];
    return [
      `wave ${i + 1}`,
      w.devices.length,
      w.prediction.install,
      w.prediction.rejected_hardware,
      w.prediction.rejected_software,
      w.prediction.unknown,
      `success ${percent(w.gates.success_ratio)}, failure ≤ ${percent(w.gates.failure_ratio)}, soak ${w.gates.soak_secs}s${w.gates.approval ? ", approval" : ""}`,
      !t ? "" : t.starts == null ? "not within a year (its windows never open)" : `${when(t.starts)} to ${t.ends == null ? "beyond a year" : when(t.ends)}`,
    ];
  });
  return h(
    "section",
    { class: "card plan" },
    h("h2", {}, "Plan"),
    h("p", {}, `${total} devices in ${p.waves.length} waves. Wave 1, the canary, holds one device of each of the ${p.cohorts} cohorts (hardware level and running version).`),
    p.timing ? h("p", { class: "muted" }, `Expected times if started now, each phone taking ${p.timing.job_secs}s (${p.timing.job_basis}), every gate passing.`) : null,
    table("Waves", ["Wave", "Devices", "Would install", "Rejected: hardware", "Rejected: software", "Never said hello", "Gates", "Expected"], rows),
    h("h3", {}, "The canary's cohorts"),
    h(
      "div",
      { id: "cohorts" },
      table(
        "The canary's cohorts",
        ["Hardware level", "Running", "Devices", "In wave 1"],
        (p.canary || []).map((c) => [c.hardware_level ?? "-", c.software_version || "never said hello", c.devices, c.device]),
      ),
    ),
    h("h3", {}, "Predicted rejections"),
    table(
      "Predicted rejections",
      ["Reason", "Devices"],
      [...reasons.entries()].map(([r, n]) => [r, n]),
      "None: every device with a hello would install.",
    ),
  );
}
