// ecomrlve play: a small page over the JSON API of actors/play.py. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { envs: {}, view: null, queued: [], toolGetter: null, answerGetter: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const resp = await fetch(path, { credentials: "same-origin", ...opts });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { detail: resp.statusText }; }
  if (!resp.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data));
  return data;
}

function showError(msg) {
  const box = $("error");
  box.hidden = !msg;
  box.textContent = msg || "";
}

// ------------------------------------------------------------------ JSON schema forms

function resolveRef(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 8 && s.$ref; i++) {
    const name = s.$ref.split("/").pop();
    s = { ...((root.$defs || {})[name] || {}), description: s.description || ((root.$defs || {})[name] || {}).description };
  }
  return s;
}

function unwrap(schema, root) {
  let s = resolveRef(schema, root);
  let nullable = false;
  if (s.anyOf) {
    const rest = s.anyOf.filter((x) => x.type !== "null");
    nullable = rest.length < s.anyOf.length;
    const inner = rest.length === 1 ? resolveRef(rest[0], root) : { type: "json", anyOf: rest };
    s = { ...inner, description: schema.description || inner.description, default: schema.default, title: schema.title || inner.title };
  }
  return [s, nullable];
}

function describe(schema) {
  const parts = [];
  if (schema.description) parts.push(schema.description);
  const lo = schema.minimum ?? schema.exclusiveMinimum, hi = schema.maximum ?? schema.exclusiveMaximum;
  if (lo !== undefined && hi !== undefined) parts.push(`${lo}–${hi}`);
  else if (lo !== undefined) parts.push(`≥ ${lo}`);
  else if (hi !== undefined) parts.push(`≤ ${hi}`);
  if (schema.default !== undefined && schema.default !== null) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join(" · ");
}

// Returns {node, get}: get() -> value or undefined (left blank); throws Error naming the field.
function buildField(name, rawSchema, root, required, path) {
  const [schema] = unwrap(rawSchema, root);
  const id = "f-" + path.join("-");
  const label = el("span", {}, el("b", { text: name }), required ? " *" : "");
  const desc = describe(schema);
  const wrap = (input) => el("label", { class: "field", for: id }, label, input, desc ? el("span", { class: "desc", text: desc }) : null);
  const type = schema.type;

  if (type === "object" && schema.properties) {
    const fs = el("details", { class: "group" }, el("summary", { text: `${name} (optional${desc ? ": " + desc : ""})` }));
    if (required) fs.open = true;
    const getters = buildProperties(fs, schema, root, path);
    return { node: fs, get: () => { const v = collect(getters); return Object.keys(v).length ? v : undefined; } };
  }
  if (type === "string" && schema.enum) {
    const sel = el("select", { id, name: path.join(".") }, el("option", { value: "", text: "—" }));
    for (const v of schema.enum) sel.append(el("option", { value: v, text: v }));
    return { node: wrap(sel), get: () => sel.value || undefined };
  }
  if (type === "string") {
    const inp = el("input", { id, type: "text", name: path.join("."), maxlength: schema.maxLength });
    return { node: wrap(inp), get: () => (inp.value === "" ? undefined : inp.value) };
  }
  if (type === "integer" || type === "number") {
    const inp = el("input", { id, type: "number", name: path.join("."), step: type === "integer" ? "1" : "any", min: schema.minimum, max: schema.maximum });
    return { node: wrap(inp), get: () => {
      if (inp.value === "") return undefined;
      const v = Number(inp.value);
      if (!Number.isFinite(v) || (type === "integer" && !Number.isInteger(v))) throw new Error(`${path.join(".")}: expected ${type}`);
      return v;
    } };
  }
  if (type === "boolean") {
    const sel = el("select", { id, name: path.join(".") }, el("option", { value: "", text: "—" }), el("option", { value: "true", text: "true" }), el("option", { value: "false", text: "false" }));
    return { node: wrap(sel), get: () => (sel.value === "" ? undefined : sel.value === "true") };
  }
  if (type === "array") {
    const items = resolveRef(schema.items || {}, root);
    if (items.type === "string" || items.type === "integer" || items.type === "number") {
      const inp = el("input", { id, type: "text", name: path.join("."), placeholder: "comma-separated" });
      return { node: wrap(inp), get: () => {
        const parts = inp.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (!parts.length) return undefined;
        return items.type === "string" ? parts : parts.map(Number);
      } };
    }
  }
  // objects without fixed properties, unions, arrays of objects: JSON text
  const ta = el("textarea", { id, rows: "2", name: path.join("."), spellcheck: "false", placeholder: "JSON" });
  return { node: wrap(ta), get: () => {
    const text = ta.value.trim();
    if (!text) return undefined;
    try { return JSON.parse(text); } catch (e) {
      if (type === "json") return text; // e.g. a free-text policy answer
      throw new Error(`${path.join(".")}: not valid JSON (${e.message})`);
    }
  } };
}

function buildProperties(container, schema, root, path) {
  const getters = [];
  const required = new Set(schema.required || []);
  for (const [name, sub] of Object.entries(schema.properties || {})) {
    const f = buildField(name, sub, root, required.has(name), path.concat(name));
    container.append(f.node);
    getters.push([name, f.get, required.has(name), path.concat(name).join(".")]);
  }
  return getters;
}

function collect(getters) {
  const out = {};
  for (const [name, get, required, full] of getters) {
    const v = get();
    if (v === undefined) {
      if (required) throw new Error(`${full}: required`);
      continue;
    }
    out[name] = v;
  }
  return out;
}

// ------------------------------------------------------------------ rendering

function renderTools(view) {
  const sel = $("tool-select");
  const previous = sel.value;
  sel.replaceChildren();
  for (const t of view.tools) sel.append(el("option", { value: t.function.name, text: t.function.name }));
  if (view.tools.some((t) => t.function.name === previous)) sel.value = previous;
  renderToolForm();
}

function renderToolForm() {
  const view = state.view;
  const form = $("tool-form");
  form.replaceChildren();
  if (!view) return;
  const tool = view.tools.find((t) => t.function.name === $("tool-select").value);
  if (!tool) return;
  form.append(el("div", { class: "tool-desc", text: tool.function.description || "" }));
  const params = tool.function.parameters || {};
  const getters = buildProperties(form, params, params, ["tool", tool.function.name]);
  state.toolGetter = () => ({ name: tool.function.name, args: collect(getters) });
}

function renderAnswerForm(view) {
  const form = $("answer-form");
  form.replaceChildren();
  const schema = view.answer_schema;
  const getters = buildProperties(form, schema, schema, ["answer"]);
  state.answerGetter = () => collect(getters);
}

function renderQueued() {
  const list = $("queued");
  list.replaceChildren();
  if (!state.queued.length) { list.append(el("li", { class: "empty", text: "none yet" })); return; }
  state.queued.forEach((call, i) => {
    const rm = el("button", { type: "button", title: "remove", text: "✕" });
    rm.addEventListener("click", () => { state.queued.splice(i, 1); renderQueued(); });
    list.append(el("li", {}, `${call.name}(${JSON.stringify(call.args)})`, rm));
  });
}

function renderMessage(m) {
  const role = m.role;
  const who = { system: "System prompt", user: "Shopper", assistant: "Agent", tool: "Tool · " + (m.name || "") }[role] || role;
  if (role === "system") {
    return el("details", { class: "msg system" }, el("summary", { text: who }), el("div", { text: m.content }));
  }
  const box = el("div", { class: "msg " + role }, el("div", { class: "who", text: who }));
  if (role === "tool") {
    // the whole result, pretty-printed, in a scrollable box (never cut)
    let text = m.content;
    try { text = JSON.stringify(JSON.parse(m.content), null, 2); } catch (e) { /* not JSON: keep raw */ }
    box.append(el("pre", { class: "tool-result", text }));
    return box;
  }
  if (m.content) box.append(el("div", { text: m.content }));
  for (const c of m.tool_calls || []) box.append(el("span", { class: "chip", text: `${c.function.name}(${c.function.arguments})` }));
  if (m.answer) box.append(el("div", { class: "label", text: "answer" }), el("pre", { text: JSON.stringify(m.answer, null, 2) }));
  return box;
}

function renderReward(view) {
  const panel = $("reward-panel");
  const r = view.reward;
  panel.hidden = !r;
  if (!r) return;
  const table = $("reward-table");
  table.replaceChildren();
  const row = (k, v, cls) => table.append(el("tr", {}, el("td", { text: k }), el("td", { class: cls || "", text: v })));
  row("correct", r.is_correct ? "yes" : "no", r.is_correct ? "good" : "bad");
  row("r_total", r.r_total.toFixed(3), r.r_total > 0 ? "good" : "bad");
  row("r_task (×0.75)", r.r_task.toFixed(3));
  row("r_eff (×0.15)", r.r_eff.toFixed(3));
  row("r_hall (×0.10)", r.r_hall.toFixed(3));
  row("termination", r.termination_reason);
  $("reward-details").textContent = JSON.stringify(r.details, null, 2);
}

function render(view) {
  state.view = view;
  const tr = $("transcript");
  tr.replaceChildren(...view.messages.map(renderMessage));
  const panel = $("transcript-panel");
  panel.scrollTop = panel.scrollHeight;
  $("brief").textContent = `${view.env_id} · d=${view.difficulty} · seed ${view.seed}`;
  $("budget").textContent = `(at most ${view.B_tool} per turn)`;
  const status = $("status");
  if (view.done) {
    status.textContent = `Episode over after ${view.turn} turn(s): ${view.reward.termination_reason}, r_total = ${view.reward.r_total.toFixed(3)}`;
    status.className = "status done";
  } else {
    status.textContent = `Turn ${view.turn + 1} of ${view.T_max}`;
    status.className = "status";
  }
  for (const id of ["add-call", "send-turn", "submit-answer", "send-raw"]) $(id).disabled = view.done;
  $("turn-panel").hidden = view.done;
  renderTools(view);
  renderAnswerForm(view);
  renderReward(view);
  if ($("goal-toggle").checked) loadGoal();
}

async function loadGoal() {
  const pre = $("goal");
  try {
    const g = await api("/api/goal");
    pre.textContent = JSON.stringify(g.goal, null, 2);
  } catch (e) {
    pre.textContent = e.message;
  }
  pre.hidden = false;
}

// ------------------------------------------------------------------ actions

async function send(action) {
  showError("");
  try {
    const view = await api("/api/step", { action });
    state.queued = [];
    renderQueued();
    $("message").value = "";
    render(view);
  } catch (e) { showError(e.message); }
}

function baseAction() {
  const action = {};
  const msg = $("message").value.trim();
  if (msg) action.assistant_message = msg;
  if (state.queued.length) action.tool_calls = state.queued.slice();
  return action;
}

function wire() {
  $("reset-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("");
    const body = { env_id: $("env-select").value, difficulty: Number($("difficulty").value || 0) };
    if ($("seed").value !== "") body.seed = Number($("seed").value);
    try {
      state.queued = [];
      renderQueued();
      render(await api("/api/reset", body));
    } catch (e) { showError(e.message); }
  });
  $("tool-select").addEventListener("change", renderToolForm);
  $("add-call").addEventListener("click", () => {
    showError("");
    try {
      state.queued.push(state.toolGetter());
      renderQueued();
      renderToolForm();
    } catch (e) { showError(e.message); }
  });
  $("send-turn").addEventListener("click", () => {
    const action = baseAction();
    if (!Object.keys(action).length) { showError("Write a message or add a tool call first."); return; }
    send(action);
  });
  $("submit-answer").addEventListener("click", () => {
    showError("");
    try {
      const answer = state.answerGetter();
      answer.env = state.view.env_id;  // the page knows the environment
      send({ ...baseAction(), answer });
    } catch (e) { showError(e.message); }
  });
  $("send-raw").addEventListener("click", () => send($("raw-action").value));
  $("goal-toggle").addEventListener("change", () => {
    if ($("goal-toggle").checked && state.view) loadGoal();
    else $("goal").hidden = true;
  });
}

async function init() {
  wire();
  try {
    const data = await api("/api/envs");
    const sel = $("env-select");
    for (const e of data.envs) {
      state.envs[e.env_id] = e;
      sel.append(el("option", { value: e.env_id, disabled: !e.available, text: e.available ? e.env_id : `${e.env_id} (unavailable)` }));
    }
    sel.value = data.default_env;
    $("difficulty").max = data.max_difficulty;
    $("difficulty").value = data.default_difficulty;
    if (data.state) render(data.state);  // this session's episode (after a reload)
  } catch (e) { showError(e.message); }
}

init();
