// The web console in a real browser (Debian's Chromium, driven by playwright-core), against a real controller
// and its simulated fleet after `bindwave demo`: r1 and r2 finished, r3 (the corrupted bind) stopped by its
// failure gate. `tests/tests/console.rs` starts all of it and runs this file with:
//   BINDWAVE_URL              the controller, https://127.0.0.1:PORT
//   BINDWAVE_OPERATOR_TOKEN   an operator's token; BINDWAVE_VIEWER_TOKEN a viewer's
//   BINDWAVE_SCREENSHOTS      where the pages' screenshots go, for review
//   NODE_EXTRA_CA_CERTS       the controller's CA, for the checks made through the API from here
// Each check that the page acted is also made through the API: the page must not lie.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const URL = process.env.BINDWAVE_URL;
const OPERATOR = process.env.BINDWAVE_OPERATOR_TOKEN;
const VIEWER = process.env.BINDWAVE_VIEWER_TOKEN;
const SHOTS = process.env.BINDWAVE_SCREENSHOTS || "screenshots";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

let browser;

before(async () => {
  assert.ok(URL && OPERATOR && VIEWER, "BINDWAVE_URL, BINDWAVE_OPERATOR_TOKEN and BINDWAVE_VIEWER_TOKEN are needed");
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  if (browser) await browser.close();
});

/** The API from here, with a token: status and JSON. */
async function api(token, method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(URL + path, init);
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** A ratio as the page writes it. */
function percent(ratio) {
  return `${(ratio * 100).toFixed((ratio * 100) % 1 ? 1 : 0)}%`;
}

async function until(what, f, ms = 60000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A page signed in with `token`; it fails the test on any script error. */
async function signedIn(token, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(URL + "/");
  await page.locator("#token").fill(token);
  // The keyboard signs in, as the button does.
  await page.locator("#token").press("Enter");
  await page.locator("#role").waitFor();
  return page;
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function imageOf(version) {
  const images = (await api(OPERATOR, "GET", "/api/v1/images")).body;
  const image = images.find((i) => i.software_version === version);
  assert.ok(image, `an image of ${version}`);
  return image.sha256;
}

test("the bad image's failure gate shows as tripped, with the numbers the engine stopped on", async () => {
  const page = await signedIn(OPERATOR);
  await page.goto(URL + "/#/rollouts/r3");
  const gates = page.locator("#gates");
  await gates.getByText("TRIPPED", { exact: true }).waitFor();
  const status = (await api(OPERATOR, "GET", "/api/v1/rollouts/r3?jobs=false")).body;
  const cause = status.rollout.cause;
  assert.equal(cause.cause, "failure_threshold");
  const text = await gates.innerText();
  assert.match(text, new RegExp(`The failure gate tripped: ${cause.failed} of ${cause.finished} finished devices failed`));
  const failure = status.gates.find((g) => g.gate === "failure");
  const row = (await gates.locator("tbody tr").allInnerTexts()).find((r) => r.startsWith("failure"));
  assert.equal(row, `failure\tfailed or timed out, of those finished\t${percent(failure.observed)}\tat most ${percent(failure.threshold)}\tTRIPPED`);
  assert.match(await page.locator("#summary").innerText(), /paused/);
  // The failures are listed by their reason, with their numbers.
  assert.match(await page.locator("#reasons").innerText(), /sha-256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64}/);
  await shot(page, "rollout-gate-tripped");
  assert.deepEqual(page.errors, []);
});

test("rejections list their reasons, with the expected and the actual values", async () => {
  const page = await signedIn(OPERATOR);
  await page.goto(URL + "/#/rollouts/r1");
  const reasons = page.locator("#reasons");
  await reasons.getByText("hardware level 2 is not among").waitFor();
  const status = (await api(OPERATOR, "GET", "/api/v1/rollouts/r1?jobs=false&reasons=true")).body;
  assert.ok(status.reasons.length >= 2, JSON.stringify(status.reasons));
  const rows = await reasons.locator("tbody tr").allInnerTexts();
  assert.equal(rows.length, status.reasons.length);
  for (const [i, group] of status.reasons.entries()) {
    assert.ok(rows[i].includes(group.text) && rows[i].includes(`\t${group.devices}\t`), `${rows[i]} / ${group.text}`);
  }
  assert.ok(rows.some((r) => /hardware level 5 is not among the bind's supported levels \[3, 4\]/.test(r)), rows.join("\n"));
  await shot(page, "rollout-rejections");
  assert.deepEqual(page.errors, []);
});

test("a new rollout is planned on the page, then created, and its page follows its waves to the end", async () => {
  const page = await signedIn(OPERATOR);
  const sha = await imageOf("V3 R3.18.0");
  await page.goto(URL + "/#/images");
  await shot(page, "images");
  await page.locator(`a[href="#/new/${sha}"]`).click();
  await page.locator("#new-waves").fill("1,25%,100%");
  await page.locator("#plan-it").click();
  const plan = page.locator(".plan");
  await plan.waitFor();
  const planText = await plan.innerText();
  assert.match(planText, /60 devices in 3 waves/);
  assert.match(planText, /hardware level 2 is not among/, "the predicted rejections by reason");
  assert.match(planText, /holds one device of each of the \d+ cohorts/);
  const planned = (await api(OPERATOR, "POST", "/api/v1/rollouts/plan", { spec: { image: sha, waves: [{ size: { count: 1 } }, { size: { percent: 25 } }, { size: { percent: 100 } }] } })).body;
  const cohorts = await page.locator("#cohorts tbody tr").allInnerTexts();
  assert.equal(cohorts.length, planned.canary.length);
  assert.equal(cohorts.length, planned.cohorts);
  for (const c of planned.canary) assert.ok(cohorts.some((r) => r.startsWith(`${c.hardware_level}\t${c.software_version}\t${c.devices}\t`)), cohorts.join("\n"));
  await shot(page, "plan");
  await page.locator("#create").click();
  await page.waitForURL(/#\/rollouts\/r\d+$/);
  const id = page.url().split("/").pop();
  // The page is never reloaded: what follows arrives as events.
  await page.evaluate(() => (window.stillThisPage = true));
  assert.match(await page.locator("#summary").innerText(), /created/);
  const seen = new Set();
  const watch = setInterval(async () => {
    try {
      seen.add(await page.locator("#summary").innerText());
    } catch {}
  }, 50);
  await page.locator("#action-start").click();
  await page.locator("#ask-reason").fill("change CHG-4711");
  await page.locator("#ask-ok").click();
  await page.locator("#summary").getByText("finished").waitFor({ timeout: 120000 });
  clearInterval(watch);
  assert.equal(await page.evaluate(() => window.stillThisPage), true, "the page was reloaded");
  assert.ok([...seen].some((s) => /wave \d\/3/.test(s) || /finished/.test(s)), [...seen].join(" | "));
  // Every wave shows passed, and the counts are the API's.
  const status = (await api(OPERATOR, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body;
  assert.equal(status.rollout.state, "finished");
  const waves = await page.locator("#waves li").allInnerTexts();
  assert.equal(waves.length, 3);
  for (const [i, w] of waves.entries()) {
    assert.match(w, /passed/);
    assert.ok(w.includes(`${status.waves[i].devices} devices`), w);
  }
  const audit = await page.locator("#audit").innerText();
  assert.match(audit, /start\tchange CHG-4711/, "the reason given on the page is in the audit trail");
  await shot(page, "rollout-finished");
  assert.deepEqual(page.errors, []);
});

/** A rollout of the R3.18.0 image over the fleet, started, soaking `soak` seconds after its one-device wave. */
async function soakingRollout(soak) {
  const sha = await imageOf("V3 R3.18.0");
  const spec = { image: sha, waves: [{ size: { count: 1 } }, { size: { percent: 100 } }], gates: { soak_secs: soak } };
  const made = await api(OPERATOR, "POST", "/api/v1/rollouts", { spec });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const id = made.body.id;
  assert.equal((await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/start`, { reason: "test" })).status, 200);
  await until(`${id} to soak after wave 1`, async () => (await api(OPERATOR, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body.rollout.stage === "soaking");
  return id;
}

test("pause from the page stops new commands", async () => {
  const id = await soakingRollout(4);
  const page = await signedIn(OPERATOR);
  await page.goto(URL + `/#/rollouts/${id}`);
  await page.locator("#soak").getByText("left").waitFor();
  // By keyboard alone: the button takes Enter, the question its typed reason, Tab moves on to its button.
  await page.locator("#action-pause").focus();
  await page.keyboard.press("Enter");
  await page.locator("#ask-reason").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), "ask-reason", "the question takes the keyboard");
  await page.keyboard.type("helpdesk reports one-way audio");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "ask-ok");
  await page.keyboard.press("Enter");
  await page.locator("#summary").getByText("paused").waitFor();
  // Past the end of the soak, wave 2 is still not commanded: nothing was sent after the pause.
  await new Promise((r) => setTimeout(r, 6000));
  const status = (await api(OPERATOR, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body;
  assert.equal(status.rollout.state, "paused");
  assert.equal(status.rollout.cause.cause, "operator");
  assert.equal(status.rollout.cause.reason, "helpdesk reports one-way audio");
  const wave2 = status.waves[1];
  assert.equal(wave2.counts.pending, wave2.devices, JSON.stringify(wave2.counts));
  assert.equal(wave2.started_at, null);
  await shot(page, "rollout-paused");
  await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/abort`, { reason: "test over" });
  assert.deepEqual(page.errors, []);
});

test("the emergency stop on the page pauses every running rollout, and says which", async () => {
  const id = await soakingRollout(600);
  const page = await signedIn(OPERATOR);
  await page.goto(URL + `/#/rollouts/${id}`);
  await page.locator("#summary").getByText("soaking").waitFor();
  await page.evaluate(() => (window.stillThisPage = true));
  // The page follows a change made elsewhere (here through the API) without a reload; how soon is printed.
  const sent = Date.now();
  assert.equal((await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/pause`, { reason: "elsewhere" })).status, 200);
  await page.locator("#summary").getByText("paused").waitFor();
  console.log(`# the page showed a change made through the API after ${Date.now() - sent} ms`);
  assert.equal((await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/resume`, { reason: "go on" })).status, 200);
  await page.locator("#summary").getByText("soaking").waitFor();
  assert.equal(await page.evaluate(() => window.stillThisPage), true, "the page was reloaded");
  await page.locator("#stop").click();
  await page.locator("#ask-reason").fill("bad image reported by the helpdesk");
  await page.locator("#ask-ok").click();
  await page.getByText(`Emergency stop: ${id} paused.`).waitFor();
  const status = (await api(OPERATOR, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body;
  assert.equal(status.rollout.state, "paused");
  assert.equal(status.rollout.cause.cause, "emergency_stop");
  assert.equal(status.rollout.cause.actor, "olga");
  await page.locator("#summary").getByText("emergency stop by olga").waitFor();
  await shot(page, "emergency-stop");
  await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/abort`, { reason: "test over" });
  assert.deepEqual(page.errors, []);
});

test("an analysis gate without an answer shows as such, and the rollout waits", async () => {
  // The demo's controller is given a Prometheus that does not answer: the gate never passes for want of data.
  const sha = await imageOf("V3 R3.18.0");
  const analysis = { name: "calls", query: 'max(pbx_call_failure_ratio{site="munich"})', success: "< 0.01", interval_secs: 1, count: 2 };
  const spec = { image: sha, waves: [{ size: { count: 1 } }, { size: { percent: 100 } }], gates: { analyses: [analysis] } };
  const made = await api(OPERATOR, "POST", "/api/v1/rollouts", { spec });
  assert.equal(made.status, 200, JSON.stringify(made.body));
  const id = made.body.id;
  const page = await signedIn(VIEWER);
  await page.goto(URL + `/#/rollouts/${id}`);
  await page.locator("#summary").getByText("created").waitFor();
  assert.equal((await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/start`, { reason: "test" })).status, 200);
  await page.locator("#analyses").getByText("NO ANSWER", { exact: false }).waitFor({ timeout: 30000 });
  const status = (await api(VIEWER, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body;
  assert.equal(status.rollout.cause.cause, "analysis_inconclusive");
  const row = (await page.locator("#analyses tbody tr").allInnerTexts())[0];
  assert.ok(row.startsWith(`calls\t${analysis.query}\t< 0.01\t${status.analyses[0].measured} of 2\t0 (0 tolerated)`), row);
  assert.match(await page.locator("#gates").innerText(), /The analysis calls gate tripped: it could not be measured: Prometheus did not answer/);
  await shot(page, "rollout-analysis");
  await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/abort`, { reason: "test over" });
  assert.deepEqual(page.errors, []);
});

test("a viewer sees everything and cannot press pause, and the API refuses it too", async () => {
  const id = await soakingRollout(600);
  const page = await signedIn(VIEWER);
  assert.match(await page.locator("#role").innerText(), /viewer/);
  await page.goto(URL + `/#/rollouts/${id}`);
  await page.locator("#summary").getByText("soaking").waitFor();
  assert.equal(await page.locator("#action-pause").count(), 0, "a pause button for a viewer");
  assert.equal(await page.locator("#actions button").count(), 0);
  assert.match(await page.locator("#actions").innerText(), /role \(viewer\) may watch this rollout, not act on it/);
  assert.equal(await page.locator("#stop").isVisible(), false, "the emergency stop for a viewer");
  // Everything else is there to read.
  for (const section of ["#waves", "#gates", "#reasons", "#audit"]) assert.equal(await page.locator(section).count(), 1, section);
  await shot(page, "rollout-viewer");
  const refused = await api(VIEWER, "POST", `/api/v1/rollouts/${id}/pause`, { reason: "viewer tries" });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal((await api(VIEWER, "GET", `/api/v1/rollouts/${id}?jobs=false`)).body.rollout.state, "active");
  await api(OPERATOR, "POST", `/api/v1/rollouts/${id}/abort`, { reason: "test over" });
  assert.deepEqual(page.errors, []);
});

test("the fleet by model, level, version and state, filtered, and one device's history", async () => {
  const page = await signedIn(VIEWER);
  await page.goto(URL + "/#/fleet");
  await page.getByText("By hardware level").waitFor();
  const devices = (await api(VIEWER, "GET", "/api/v1/devices")).body;
  assert.match(await page.locator("main").innerText(), new RegExp(`${devices.length} devices, ${devices.filter((d) => d.online).length} online`));
  await shot(page, "fleet");
  await page.locator("#fleet-filter").fill("CP400");
  await page.locator("#fleet-filter").press("Enter");
  await page.waitForURL(/q=CP400/);
  const rows = await page.locator("tbody tr").allInnerTexts();
  const cp400 = devices.filter((d) => d.hello && d.hello.model === "CP400");
  assert.equal(rows.length, cp400.length);
  assert.ok(rows.every((r) => r.includes("CP400")));
  const summary = (await api(VIEWER, "GET", "/api/v1/fleet/summary?filter=CP400")).body;
  assert.equal(summary.matching, cp400.length);
  assert.equal(await page.locator("#shown").innerText(), `${summary.matching} shown.`);
  await page.locator("tbody tr a").first().click();
  await page.getByRole("heading", { name: /^Device / }).waitFor();
  const jobs = await page.locator("main > div > .scroll tbody tr").allInnerTexts();
  assert.ok(jobs.length >= 3, "its jobs in the demo's rollouts: " + jobs.join("\n"));
  assert.ok(jobs.some((j) => /^r1\t/.test(j)));
  // Its hellos' history: the versions the demo's rollouts installed, as the API has them.
  const id = (await page.locator("h1").innerText()).replace("Device ", "");
  const detail = (await api(VIEWER, "GET", `/api/v1/devices/${id}`)).body;
  assert.ok(detail.device.changes.length >= 1, "a CP400 took the demo's first bind");
  for (const j of detail.jobs.filter((j) => j.reason_text)) {
    assert.ok(jobs.some((r) => r.startsWith(`${j.rollout}\t`) && r.includes(j.reason_text)), `${j.reason_text} in\n${jobs.join("\n")}`);
  }
  const changes = await page.locator("#changes tbody tr").allInnerTexts();
  assert.equal(changes.length, detail.device.changes.length);
  for (const c of detail.device.changes) {
    assert.ok(changes.some((r) => r.includes(`from ${c.from_version} to ${c.to_version}`)), changes.join("\n"));
  }
  await shot(page, "device");
  assert.deepEqual(page.errors, []);
});

test("the rollout page works on a phone's screen", async () => {
  const page = await signedIn(VIEWER, { width: 390, height: 844 });
  await page.goto(URL + "/#/rollouts/r3");
  await page.locator("#gates").getByText("TRIPPED", { exact: true }).waitFor();
  // Nothing runs off the side of the screen but tables, which scroll in their own box.
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 400, `the page is ${width}px wide on a 390px screen`);
  await shot(page, "rollout-phone");
  assert.deepEqual(page.errors, []);
});
