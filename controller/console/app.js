// The console: who the token is, which page the address names, and keeping the page live. Every change the
// controller makes durable arrives as an event; the page then reads again what it shows.

import { ApiError, follow, get, post, setToken, token } from "./api.js";
import { h, notice } from "./dom.js";
import { rollout } from "./rollout.js";
import { create, device, fleet, images, rollouts } from "./views.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
const live = document.getElementById("live");
const stop = document.getElementById("stop");
const dialog = document.getElementById("ask");

const ctx = {
  role: null,
  canOperate: false,
  query: new URLSearchParams(),
  go: (hash) => {
    if (location.hash === hash) render();
    else location.hash = hash;
  },
  ask,
};

/** Asks for the reason an action goes into the audit log with; `null` if the operator backs out. */
function ask(title, help) {
  return new Promise((resolve) => {
    const input = dialog.querySelector("textarea");
    dialog.querySelector("h2").textContent = title;
    dialog.querySelector(".help").textContent = help;
    input.value = "";
    const done = (value) => {
      dialog.close();
      resolve(value);
    };
    dialog.querySelector("#ask-ok").onclick = () => done(input.value.trim());
    dialog.querySelector("#ask-cancel").onclick = () => done(null);
    dialog.oncancel = () => resolve(null);
    dialog.showModal();
    input.focus();
  });
}

/** The page the address names. */
function route() {
  const [path, query] = (location.hash.slice(1) || "/rollouts").split("?");
  ctx.query = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  switch (parts[0]) {
    case "fleet":
      // The fleet counted and a page of it: read again at most every few seconds, however busy the fleet.
      return ["fleet", () => fleet(ctx), SLOW];
    case "devices":
      return ["fleet", () => device(ctx, parts[1])];
    case "images":
      return ["images", () => images(ctx)];
    case "new":
      // A form: not redrawn by the fleet's changes under the operator's hands.
      return ["images", () => create(ctx, parts[1]), false];
    case "rollouts":
      if (parts[1]) return ["rollouts", () => rollout(ctx, parts[1], render)];
      return ["rollouts", () => rollouts(ctx)];
    default:
      return ["rollouts", () => rollouts(ctx)];
  }
}

/** How often a page that reads the whole fleet follows its changes, in ms. */
const SLOW = 5000;
let drawnAt = 0;
let waiting = null;

let rendering = false;
/** A drawing asked for while one was under way: `null`, `"change"`, or `"page"` (which wins). */
let again = null;

/** Draws the page anew, keeping the keyboard's place; one drawing at a time, the latest change last. A change
 * the controller made redraws only a live page, and not while a question is open. */
async function render(change) {
  if (rendering) {
    again = again === "page" || !change ? "page" : "change";
    return;
  }
  const [section, page, live = true] = route();
  if (change && (!live || dialog.open)) return;
  if (change && typeof live === "number" && Date.now() - drawnAt < live) {
    // Not yet: the change is drawn when the interval is over (one drawing for all the changes until then).
    if (!waiting) {
      waiting = setTimeout(() => {
        waiting = null;
        render(true);
      }, live - (Date.now() - drawnAt));
    }
    return;
  }
  rendering = true;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.section === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const focused = document.activeElement && document.activeElement.id;
  let view;
  try {
    view = await page();
  } catch (e) {
    view = e instanceof ApiError && e.status === 401 ? login("The token was refused: " + e.message) : notice("error", e.message);
  }
  main.replaceChildren(view);
  drawnAt = Date.now();
  if (focused) document.getElementById(focused)?.focus();
  rendering = false;
  if (again) {
    const kind = again;
    again = null;
    render(kind === "change");
  }
}

/** The token form: the console reads and acts with an API token (`bindwave token create`). */
function login(why) {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", "aria-label": "API token" });
  const submit = async () => {
    setToken(input.value);
    await start();
  };
  input.addEventListener("keydown", (e) => e.key === "Enter" && submit());
  return h(
    "section",
    { class: "card login" },
    h("h1", {}, "Sign in with an API token"),
    why ? notice("error", why) : null,
    h("p", {}, "A viewer token sees everything and changes nothing; an operator token also runs rollouts. Make one with ", h("code", {}, "bindwave token create --name NAME --role viewer"), "."),
    h("label", {}, "Token ", input),
    h("button", { id: "sign-in", class: "primary", onclick: submit }, "Sign in"),
  );
}

let unfollow = null;

async function start() {
  let me;
  try {
    me = await get("/api/v1/whoami");
  } catch (e) {
    who.textContent = "";
    stop.hidden = true;
    main.replaceChildren(login(token() ? e.message : ""));
    document.getElementById("token").focus();
    return;
  }
  ctx.role = me.role;
  ctx.canOperate = me.role === "operator" || me.role === "admin";
  who.replaceChildren(
    h(
      "span",
      {},
      me.insecure_lab ? h("strong", { class: "lab" }, "LAB MODE: no tokens") : null,
      " ",
      h("span", { id: "role" }, me.name ? `${me.name} (${me.role})` : me.role),
      " ",
      token() ? h("button", { id: "sign-out", onclick: () => (setToken(""), location.reload()) }, "Sign out") : null,
    ),
  );
  stop.hidden = !ctx.canOperate;
  if (unfollow) unfollow();
  let pending = null;
  unfollow = follow(
    () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        render(true);
      }, 50);
    },
    (up) => {
      live.textContent = up ? "live" : "reconnecting";
      document.body.classList.toggle("stale", !up);
    },
  );
  render();
}

stop.addEventListener("click", async () => {
  const reason = await ask("Emergency stop", "Pauses every running rollout at once. Say why, for the audit log.");
  if (reason === null) return;
  try {
    const r = await post("/api/v1/stop", { reason });
    main.prepend(notice("ok", `Emergency stop: ${r.stopped.length ? r.stopped.join(", ") + " paused" : "nothing was running"}.`));
  } catch (e) {
    main.prepend(notice("error", `Emergency stop: ${e.message}`));
  }
});

window.addEventListener("hashchange", () => {
  render();
  main.focus();
});
start();
