// The mflux-server web UI: one plain script, no build step, no third-party code, nothing fetched but the API.
// A classic script rather than a module so that the page also works opened from a file.
//
// Requests go through one shared scheduler (at most 4 per second per tab, whatever the number of cards), which
// backs off while the server is unreachable. Live progress comes from Server-Sent Events when the server offers
// /api/events, else from gentle /api/status polling paced by the server's own forecast.

"use strict";

const MAX_SEED = 2 ** 32 - 1;
const MAX_IMAGES = 16;
const MIN_GAP_MS = 250; // ≥ 250 ms between request starts: never more than 4 requests per second per tab
const QUEUE_EVERY_MS = 4000;
const QUEUE_LOADING_EVERY_MS = 1000; // while one of our tasks waits for its model to load: say when it is over
const MODELS_EVERY_MS = 15000;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 10000;
const MAX_STREAMS = 2; // EventSources held at once: browsers allow only 6 connections per host over HTTP/1.1
const MAX_KEPT_CARDS = 200;
const PREVIEW_MIN_SECONDS = 1; // no preview when the image is due sooner (see CardView.showPreview)
const FINAL = new Set(["done", "failed", "cancelled", "gone"]);
const STATUS_LABEL = {
  waiting: "Waiting",
  running: "Running",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
  gone: "Gone",
};

const $ = (id) => document.getElementById(id);
const now = () => performance.now();
const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

// -- storage: everything survives a reload; a browser without localStorage still gets a working page ------------

const storage = {
  get(key, fallback) {
    try {
      const text = localStorage.getItem(key);
      return text === null ? fallback : JSON.parse(text);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch {
      // private mode or quota: the page keeps working, it just forgets on reload
    }
  },
};

// -- talking to the server -----------------------------------------------------------------------------------

class NetworkError extends Error {}

class ApiError extends Error {
  constructor(status, message, body = {}, headers = null) {
    super(message);
    this.status = status;
    this.body = body;
    this.headers = headers;
  }
}

const transient = (error) => error instanceof NetworkError || (error instanceof ApiError && error.status >= 500);

function pageBase() {
  // Served by the server (possibly behind a path prefix): its API sits next to the page. Opened from a file: the
  // default local server.
  if (location.protocol === "http:" || location.protocol === "https:") return new URL(".", location.href).href;
  return "http://localhost:4030/";
}

function normaliseBase(text) {
  const url = new URL(text.trim());
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError("not an http(s) address");
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  url.search = "";
  url.hash = "";
  return url.href;
}

const api = {
  base: pageBase(),
  key: storage.get("mflux.apiKey", ""),
  lastRequest: -Infinity,

  url(path, query = {}, { withKey = false } = {}) {
    const url = new URL(path, this.base);
    for (const [name, value] of Object.entries(query)) {
      for (const item of Array.isArray(value) ? value : [value]) {
        if (item !== undefined && item !== null) url.searchParams.append(name, String(item));
      }
    }
    // <img> and EventSource cannot send headers: the server also takes the key as a query parameter.
    if (withKey && this.key) url.searchParams.set("api_key", this.key);
    return url.href;
  },

  // `accept`: error statuses whose body is the answer (410: a failed or cancelled task's status).
  async request(path, { method = "GET", query = {}, body, raw = false, accept = [] } = {}) {
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (this.key) headers.Authorization = `Bearer ${this.key}`;
      this.lastRequest = now();
      let response;
      try {
        response = await fetch(this.url(path, query), {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          cache: "no-store",
        });
      } catch (error) {
        throw new NetworkError(`cannot reach the server (${error.message})`);
      }
      if (response.status === 401 && attempt === 0 && (await keyDialog.ask())) continue;
      if (!response.ok && !accept.includes(response.status)) {
        let payload = {};
        try {
          payload = await response.json();
        } catch {
          // not JSON (a proxy's error page): the status line says enough
        }
        const message = payload.message || `${response.status} ${response.statusText || "error"}`;
        throw new ApiError(response.status, message, payload, response.headers);
      }
      return raw ? response : response.json();
    }
  },
};

// -- the API key dialog: asked once per 401, shared by every request that met it ------------------------------

const keyDialog = {
  pending: null,
  declined: false,

  ask({ force = false } = {}) {
    if (this.pending) return this.pending;
    if (this.declined && !force) return Promise.resolve(false);
    const dialog = $("key-dialog");
    const input = $("api-key");
    input.value = api.key;
    this.pending = new Promise((resolve) => {
      dialog.addEventListener(
        "close",
        () => {
          const entered = dialog.returnValue === "ok" && input.value.trim() !== "";
          if (entered) {
            api.key = input.value.trim();
            storage.set("mflux.apiKey", api.key);
            this.declined = false;
            scheduler.resume();
          } else {
            this.declined = true;
          }
          this.pending = null;
          resolve(entered);
        },
        { once: true },
      );
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
    return this.pending;
  },
};

// -- one scheduler for every request the page makes on its own --------------------------------------------------

const scheduler = {
  jobs: new Map(), // key -> { due, run }; run() resolves to the next delay in ms, or null when the job is over
  backoff: 0,
  pausedUntil: 0,
  timer: 0,
  busy: false,

  add(key, run, delay = 0) {
    this.jobs.set(key, { due: now() + delay, run });
    this.wake();
  },

  remove(key) {
    this.jobs.delete(key);
  },

  soon(key, delay) {
    const job = this.jobs.get(key);
    if (!job) return;
    job.due = Math.min(job.due, now() + delay);
    job.rush = Math.min(job.rush ?? Infinity, now() + delay); // kept if the job is running right now
    this.wake();
  },

  postpone(key, delay) {
    const job = this.jobs.get(key);
    if (job) job.due = Math.max(job.due, now() + delay);
  },

  resume() {
    this.pausedUntil = 0;
    for (const job of this.jobs.values()) job.due = Math.min(job.due, now());
    this.wake();
  },

  wake() {
    if (this.busy) return; // the running job wakes the loop when it ends
    clearTimeout(this.timer);
    let due = Infinity;
    for (const job of this.jobs.values()) due = Math.min(due, job.due);
    if (!Number.isFinite(due)) return;
    const at = Math.max(due, api.lastRequest + MIN_GAP_MS, this.pausedUntil);
    if (!Number.isFinite(at)) return;
    this.timer = setTimeout(() => this.tick(), Math.max(0, at - now()));
  },

  async tick() {
    const start = now();
    let key = null;
    let job = null;
    for (const [k, j] of this.jobs) {
      if (j.due <= start && (!job || j.due < job.due)) [key, job] = [k, j];
    }
    if (!job || start < this.pausedUntil || start - api.lastRequest < MIN_GAP_MS) {
      this.wake();
      return;
    }
    this.busy = true;
    job.rush = Infinity;
    try {
      const delay = await job.run();
      this.backoff = 0;
      connection.reachable();
      if (this.jobs.get(key) === job) {
        if (delay === null || delay === undefined) this.jobs.delete(key);
        else job.due = Math.min(now() + delay, job.rush);
      }
    } catch (error) {
      if (this.jobs.get(key) !== job) {
        // removed while it ran: nothing to retry
      } else if (transient(error)) {
        // The server is down or restarting: everyone waits 1, 2, 4, … 10 s, then tries again.
        this.backoff = this.backoff ? Math.min(this.backoff * 2, BACKOFF_MAX_MS) : BACKOFF_FIRST_MS;
        this.pausedUntil = now() + this.backoff;
        job.due = this.pausedUntil;
        connection.unreachable(this.backoff, error);
      } else if (error instanceof ApiError && error.status === 401) {
        this.pausedUntil = Infinity; // until a key is entered (keyDialog → resume)
        connection.needsKey();
      } else {
        job.due = now() + 5000; // an answer we did not expect: try again, slowly
        announce(`Server error: ${error.message}`);
      }
    } finally {
      this.busy = false;
      this.wake();
    }
  },
};

// -- connection state, shown in the header ----------------------------------------------------------------------

const connection = {
  state: "unknown",
  retryAt: 0,
  summary: "",

  reachable() {
    if (this.state !== "online") {
      if (this.state === "offline") announce("Server is back. Resuming.");
      this.state = "online";
    }
    this.render();
  },

  unreachable(backoff, error) {
    if (this.state !== "offline") announce("Server unreachable. Retrying.");
    this.state = "offline";
    this.retryAt = now() + backoff;
    this.detail = error.message;
    this.render();
  },

  needsKey() {
    this.state = "key";
    this.render();
  },

  render() {
    const pill = $("server-pill");
    pill.dataset.state = this.state;
    let text = "connecting…";
    if (this.state === "online") text = this.summary || "online";
    if (this.state === "offline") {
      const seconds = Math.max(0, Math.ceil((this.retryAt - now()) / 1000));
      text = seconds > 0 ? `offline · retrying in ${seconds} s` : "offline · retrying…";
    }
    if (this.state === "key") text = "API key needed";
    $("server-pill-text").textContent = text;
    pill.title = this.state === "offline" ? this.detail || "" : api.base;
  },
};

// -- what the server offers --------------------------------------------------------------------------------------

const server = {
  info: null,
  probed: false, // the optional endpoints have been looked for
  streams: false, // /api/events exists
  previews: false, // /api/preview exists and previews are on
};

async function loadInfo() {
  const info = await api.request("api/info");
  server.info = info;
  applyInfo(info);
  if (info.auth_required && !api.key) keyDialog.ask();
  if (!server.probed) {
    server.probed = true;
    scheduler.add("probe", probeEndpoints, 0);
    // A server that chooses models per task lists them in /api/info (asking /api/ls of one that does not would
    // log a 404 in the console).
    if (Array.isArray(info.models)) scheduler.add("models", loadModels, 0);
    else picker.reset();
  }
  return null;
}

// Probe for the optional endpoints through the OpenAPI document: asking the endpoints themselves would log a 404
// in the console of every visitor of a server without them.
async function probeEndpoints() {
  const info = server.info;
  let paths = {};
  try {
    paths = (await api.request("openapi.json")).paths || {};
  } catch (error) {
    if (transient(error)) throw error;
  }
  server.streams = typeof EventSource === "function" && (info.events === true || "/api/events" in paths);
  server.previews = Boolean(info.previews) && "/api/preview" in paths;
  for (const card of cards.values()) if (!FINAL.has(card.status)) follow(card, 0);
  return null;
}

function applyInfo(info) {
  $("engine-label").textContent = info.label || `${info.engine} · ${info.model}`;
  $("demo-badge").hidden = !info.demo;
  for (const side of ["width", "height"]) {
    $(side).min = info.min_side;
    $(side).max = info.max_side;
    $(side).step = info.size_step || 16;
  }
  $("prompt").maxLength = info.max_prompt_chars;
  for (const option of $("format").options) option.disabled = !info.formats.includes(option.value);
  form.applyLimits();
}

// -- the models the server offers (GET /api/ls), and the one picked for new tasks -------------------------------
// Picking one changes only what this page sends with its tasks ("model"); "Make default" changes the server's
// default for everyone (POST /api/load), and only when asked.

const picker = {
  models: null, // name -> entry of /api/ls; null while unknown or when the server lists none
  picked: storage.get("mflux.model", ""),
  making: "", // the model a "Make default" is loading

  entry() {
    return (this.models && this.models[this.picked]) || null;
  },

  reset() {
    this.models = null;
    $("model-field").hidden = true;
  },

  init() {
    $("model").addEventListener("change", () => {
      this.pick($("model").value);
      storage.set("mflux.model", this.picked);
      form.applyLimits({ reset: true }); // the new model's defaults
      inputs.changed(); // what it does with the input images: references, mask, strength
      form.save();
      const entry = this.entry();
      announce(entry ? `Model ${this.picked}: ${switchText(entry)}.` : "");
    });
    $("model-default").addEventListener("click", () => this.makeDefault());
  },

  // Select `name` if the server offers it (and it can run: a model that needs an image only once one is given, or
  // when it is the one picked already); the default otherwise.
  pick(name) {
    const models = this.models || {};
    const usable = (n) => n in models && (!models[n].needs_image || inputs.has() || n === this.picked);
    const names = Object.keys(models);
    this.picked = usable(name) ? name : names.find((n) => models[n].default && usable(n)) || names.find(usable) || "";
    $("model").value = this.picked;
    this.renderOptions();
    this.render();
  },

  apply(models) {
    const first = this.models === null;
    this.models = models;
    const names = Object.keys(models);
    const select = $("model");
    const same = select.options.length === names.length && names.every((name, i) => select.options[i].value === name);
    if (!same) select.replaceChildren(...names.map((name) => element("option", { value: name })));
    for (const option of select.options) {
      const entry = models[option.value];
      const notes = [entry.default ? "server default" : "", entry.needs_image ? "needs an input image" : ""];
      // Led by the name unless the label says it: options of one family often share the start of their labels.
      const label = entry.label || option.value;
      const text = label.includes(option.value) ? label : `${option.value} — ${label}`;
      option.textContent = [text, ...notes].filter(Boolean).join(" · ");
    }
    this.renderOptions();
    $("model-field").hidden = names.length === 0;
    const before = this.picked;
    this.pick(this.picked);
    // The first list, or the picked model gone from it: its defaults apply (steps the person set are kept).
    if (first || this.picked !== before) form.applyLimits();
  },

  // Models that need an input image can be picked once one is given.
  renderOptions() {
    if (!this.models) return;
    for (const option of $("model").options) {
      const entry = this.models[option.value];
      option.disabled = Boolean(entry && entry.needs_image) && !inputs.has() && option.value !== this.picked;
    }
  },

  render() {
    const entry = this.entry();
    const line = $("model-switch");
    if (!entry) {
      line.textContent = "";
      $("model-defaults").textContent = "";
      $("model-default").hidden = true;
      return;
    }
    const making = this.making === this.picked;
    line.dataset.state = making || entry.loading ? "loading" : entry.load_error ? "error" : entry.loaded ? "loaded" : "switch";
    line.textContent = making ? `loading ${this.picked}… it becomes the server's default` : switchText(entry);
    line.title = entry.load_error || "";
    const defaults = [`${entry.steps} steps`];
    if (entry.guidance_adjustable && entry.default_guidance !== null) defaults.push(`guidance ${entry.default_guidance}`);
    if (!entry.guidance_adjustable) defaults.push("fixed guidance");
    const limits = form.limits();
    defaults.push(`${limits.min_side}–${limits.max_side} px in steps of ${limits.size_step}`);
    $("model-defaults").textContent = `Defaults: ${defaults.join(" · ")}`;
    const button = $("model-default");
    button.hidden = entry.default || Boolean(entry.needs_image);
    button.disabled = Boolean(this.making);
    button.textContent = making ? "Loading…" : "Make default";
  },

  async makeDefault() {
    const name = this.picked;
    if (!name || this.making) return;
    this.making = name;
    this.render();
    try {
      const answer = await api.request("api/load", { method: "POST", body: { model: name } });
      announce(`${answer.model} is now the server's default model.`);
    } catch (error) {
      form.message(`Could not make ${name} the default: ${error.message}`);
    } finally {
      this.making = "";
      this.render();
      scheduler.add("models", loadModels, 0);
      scheduler.add("info", loadInfo, 0); // the engine label names the default model
    }
  },
};

// What choosing a model adds to the wait: nothing when it is loaded, else the server's estimate of the switch.
function switchText(entry) {
  const notes = entry.default ? " · server default" : "";
  if (entry.load_error) return `cannot load: ${entry.load_error}`;
  if (entry.loaded) return `loaded${notes}`;
  if (entry.loading) return `loading now…${notes}`;
  const seconds = Number(entry.switch_seconds) || 0;
  const download = entry.present === false ? ", its weights are downloaded first" : "";
  return `switching adds ${seconds < 1 ? "<1 s" : `~${formatSeconds(seconds)}`}${download}${notes}`;
}

async function loadModels() {
  if (document.hidden) return null; // picked up again when the tab is visible
  let models;
  try {
    models = await api.request("api/ls");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      picker.reset();
      return null;
    }
    throw error;
  }
  if (models && typeof models === "object" && !Array.isArray(models)) picker.apply(models);
  return MODELS_EVERY_MS;
}

// The model a task ran (or runs) on, as the request that asks for it again: "dev@q8+ghibli:0.8" → dev, 8 bits,
// LoRA ghibli at 0.8 (the server's variant key).
function modelRequest(card) {
  const key = card.model || card.model_name;
  if (!key) return {};
  const [head, ...loras] = key.split("+");
  const [model, quantize] = head.split("@q");
  const request = { model };
  if (quantize && /^\d+$/.test(quantize)) request.quantize = Number(quantize);
  if (loras.length) {
    request.loras = loras.map((text) => {
      const at = text.lastIndexOf(":");
      return at > 0 ? { name: text.slice(0, at), scale: Number(text.slice(at + 1)) } : { name: text, scale: 1 };
    });
  }
  return request;
}

function modelName(card) {
  return modelRequest(card).model || "";
}

// -- input images: the picture to start from, an edit model's references, the mask painted over the first -------
// Nothing is uploaded until a task is sent. Each image is read here, brought within the server's limits
// (downscaled and re-encoded in the browser when it is too large) and sent as base64 with every task of a batch.

const SENDABLE = new Set(["image/png", "image/jpeg", "image/webp"]); // what the server decodes
const MASK_COLOUR = "rgb(255 45 125)"; // strokes as shown; sent as white on black
const KEPT_BATCHES = 20; // batches whose inputs stay in memory for "New seed" and "Edit" (never in localStorage)

// What the picked model does with input images (a server that lists no models: img2img, as the original).
function imageRole(entry = picker.entry()) {
  const info = server.info || {};
  const kind = (entry && entry.kind) || "text-to-image";
  const takes = !entry || kind !== "text-to-image" || Boolean(entry.img2img);
  const most = info.max_input_images ?? 4;
  let cap = takes ? 1 : 0;
  if (kind === "edit") cap = Math.max(1, Math.min(entry.max_references || 1, most));
  return {
    kind,
    takes,
    cap,
    needs: Boolean(entry && entry.needs_image),
    mask: takes && kind !== "upscale",
    maskRequired: kind === "inpaint",
    strength: takes && kind === "text-to-image",
  };
}

function readAsDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

// An image file as the server will take it: sent as it is when it fits the limits, else drawn smaller (and as
// JPEG if need be) until it does. Sizes are as the browser shows it, EXIF orientation applied (the server also
// applies it, so a mask painted here lines up).
async function readImage(file) {
  const info = server.info || {};
  const maxSide = info.max_input_side || 4096;
  const maxMb = info.max_input_mb || 10;
  const maxBytes = Math.floor(maxMb * 1024 * 1024);
  const name = file.name || "pasted image";
  const address = URL.createObjectURL(file);
  try {
    const picture = new Image();
    picture.src = address;
    try {
      await picture.decode();
    } catch {
      throw new Error(`${name} is not an image this browser can read.`);
    }
    const width = picture.naturalWidth;
    const height = picture.naturalHeight;
    if (SENDABLE.has(file.type) && Math.max(width, height) <= maxSide && file.size <= maxBytes) {
      return { name, url: await readAsDataUrl(file), width, height, note: "" };
    }
    let scale = Math.min(1, maxSide / Math.max(width, height));
    let type = file.type === "image/png" ? "image/png" : "image/jpeg";
    for (let attempt = 0; attempt < 10; attempt++) {
      const w = Math.max(1, Math.round(width * scale));
      const h = Math.max(1, Math.round(height * scale));
      const canvas = element("canvas", { width: w, height: h });
      const context = canvas.getContext("2d");
      if (type === "image/jpeg") {
        context.fillStyle = "#fff"; // JPEG has no transparency: white rather than black behind it
        context.fillRect(0, 0, w, h);
      }
      context.imageSmoothingQuality = "high";
      context.drawImage(picture, 0, 0, w, h);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, type, 0.92));
      if (blob && blob.size <= maxBytes) {
        const note = w !== width || h !== height ? `reduced from ${width}×${height}` : "converted";
        return { name, url: await readAsDataUrl(blob), width: w, height: h, note };
      }
      if (type !== "image/jpeg") type = "image/jpeg";
      else scale *= 0.8;
    }
    throw new Error(`${name} is too large for this server (at most ${maxMb} MB, ${maxSide} px a side).`);
  } finally {
    URL.revokeObjectURL(address);
  }
}

const inputs = {
  images: [], // {name, url (data: URL, as sent), width, height, note}
  kept: new Map(), // batch -> {fields, summary, snapshot}: what its tasks were sent, while this page lives
  tool: "", // "brush", "erase", or "" (not painting: a touch on the picture scrolls the page)
  painted: false, // strokes were drawn since the mask was cleared (erasing may have emptied it again)
  stroke: null, // the pointer painting now: {id, x, y}
  reading: 0,

  has() {
    return this.images.length > 0;
  },

  init() {
    $("init-remove").append(icon("close"));
    this.cursor = element("div", { class: "brush-cursor", "aria-hidden": "true", hidden: true });
    $("stage").append(this.cursor);
    $("image-file").addEventListener("change", () => {
      const files = [...$("image-file").files];
      $("image-file").value = ""; // the same file picked again is a change too
      if (files.length) this.take(files);
    });
    $("init-remove").addEventListener("click", () => this.remove(0));
    $("strength").addEventListener("input", () => this.renderStrength());
    $("mask-brush").addEventListener("click", () => this.setTool(this.tool === "brush" ? "" : "brush"));
    $("mask-erase").addEventListener("click", () => this.setTool(this.tool === "erase" ? "" : "erase"));
    $("mask-clear").addEventListener("click", () => this.clearMask({ say: true }));
    $("brush-size").addEventListener("input", () => this.moveCursor());
    this.initPainting();
    this.initDropAndPaste();
    this.renderStrength();
    this.render();
  },

  // Files picked, dropped or pasted. An edit model collects them as references (up to what it takes); any other
  // model's input image is replaced. `main`: replace the first image whatever the model ("Use as input").
  async take(files, { main = false } = {}) {
    const images = [...files].filter((file) => !file.type || file.type.startsWith("image/"));
    if (!images.length) {
      this.say("That is not an image: PNG, JPEG or WEBP.", "error");
      return false;
    }
    const role = imageRole();
    const collect = role.kind === "edit" && !main;
    const wanted = collect ? images : images.slice(0, 1);
    this.reading++;
    this.say(wanted.length > 1 ? `Reading ${wanted.length} images…` : "Reading the image…");
    const read = [];
    try {
      for (const file of wanted) read.push(await readImage(file));
    } catch (error) {
      this.say(error.message, "error");
      return false;
    } finally {
      this.reading--;
    }
    const before = this.images[0];
    let next = collect ? [...this.images, ...read] : [read[0], ...this.images.slice(1)];
    let note = !collect && images.length > 1 ? "This model takes one image: the first was used." : "";
    if (collect && next.length > role.cap) {
      note = `This model takes at most ${role.cap} image(s): ${next.length - role.cap} left out.`;
      next = next.slice(0, role.cap);
    }
    const first = !this.has();
    this.images = next;
    if (this.images[0] !== before) this.resetMask();
    if (first) form.imagesChanged({ added: true });
    this.changed();
    const reduced = read.filter((image) => image.note.startsWith("reduced"));
    const what = reduced.length ? `Reduced to fit the server's limits (${reduced[0].width}×${reduced[0].height}). ` : "";
    this.say(what + note, note ? "warn" : "");
    announce(read.length > 1 ? `${read.length} images added.` : `Image ${read[0].name} added.`);
    return true;
  },

  remove(index) {
    if (!this.images[index]) return;
    const [gone] = this.images.splice(index, 1);
    if (index === 0) this.resetMask();
    if (!this.has()) {
      this.setTool("");
      form.imagesChanged({ added: false });
    }
    this.say("");
    this.changed();
    announce(`Removed ${gone.name}.`);
    if (!this.has()) $("image-file").focus();
  },

  // What the form sends: {fields, summary} (the body's image fields and what the card says of them), or
  // {problem} when the model cannot run without something missing.
  request({ sizeFromImage }) {
    const role = imageRole();
    const name = picker.picked || "this model";
    if (this.reading) return { problem: "The image is still being read: a moment…" };
    if (role.needs && !this.has()) {
      const what = { edit: "edits", upscale: "upscales", inpaint: "repaints" }[role.kind] || "needs";
      return { problem: `${name} ${what} an image: choose, drop or paste one first.` };
    }
    if (!this.has() || !role.takes) return { fields: {}, summary: null };
    const sent = this.images.slice(0, role.cap);
    const fields = { init_image: sent[0].url };
    if (sent.length > 1) fields.init_images = sent.slice(1).map((image) => image.url);
    if (role.strength) fields.image_strength = Number($("strength").value) / 100;
    const mask = role.mask ? this.maskImage() : null;
    if (role.maskRequired && !mask) return { problem: `${name} repaints the masked area: paint it on the image first.` };
    if (mask) fields.mask_image = mask;
    if (!sizeFromImage) fields.resize = $("resize").value;
    const summary = { images: sent.length, strength: fields.image_strength ?? null, mask: Boolean(mask), kind: role.kind };
    const snapshot = { images: [...this.images], strokes: mask ? $("mask-canvas").toDataURL("image/png") : null };
    return { fields, summary, snapshot };
  },

  keep(batch, kept) {
    this.kept.set(batch, kept);
    while (this.kept.size > KEPT_BATCHES) this.kept.delete(this.kept.keys().next().value);
  },

  // Put a batch's inputs back ("Edit" on its card).
  restore(snapshot) {
    const first = !this.has();
    this.images = [...snapshot.images];
    this.resetMask();
    if (first && this.has()) form.imagesChanged({ added: true });
    this.changed();
    if (snapshot.strokes) {
      const strokes = new Image();
      strokes.addEventListener("load", () => {
        $("mask-canvas").getContext("2d").drawImage(strokes, 0, 0);
        this.painted = true;
      });
      strokes.src = snapshot.strokes;
    }
  },

  changed() {
    picker.renderOptions();
    this.render();
    form.sync();
  },

  say(text, tone = "") {
    const line = $("image-message");
    line.textContent = text;
    line.dataset.tone = tone;
  },

  renderStrength() {
    $("strength-value").textContent = `${$("strength").value}%`;
  },

  render() {
    const role = imageRole();
    const has = this.has();
    const main = this.images[0];
    const edit = role.kind === "edit";
    $("image-title").textContent = edit ? "Images to edit" : role.kind === "upscale" ? "Image to upscale" : "Input image";
    let need = role.takes ? "optional" : "not used by this model";
    if (role.needs) need = has ? "" : "required";
    if (edit && has) need = `${Math.min(this.images.length, role.cap)} of up to ${role.cap}`;
    $("image-need").textContent = need;
    $("image-need").dataset.tone = role.needs && !has ? "required" : !role.takes && has ? "warn" : "";
    const room = edit && this.images.length < role.cap;
    $("image-pick").textContent = !has ? "Choose image…" : room ? "Add image…" : "Replace…";
    $("image-file").multiple = edit;
    $("image-field").classList.toggle("has-image", has);
    $("init").hidden = !has;
    if (!has) {
      const paste = [element("kbd", { text: "Ctrl" }), "+", element("kbd", { text: "V" })];
      $("dropzone-hint").replaceChildren("or drop one here, or paste it (", ...paste, ")");
      return;
    }
    // With an image the drop zone is the line under it: what the image is, and the button to change it.
    const used = role.takes ? "" : " · not used by this model";
    const meta = [main.name, `${main.width}×${main.height}`, main.note].filter(Boolean).join(" · ") + used;
    $("dropzone-hint").textContent = meta;
    $("dropzone-hint").title = room ? "Drop or paste more images to add them" : "Drop or paste another image to replace it";

    const preview = $("init-preview");
    if (preview.getAttribute("src") !== main.url) preview.src = main.url;
    preview.alt = `The input image: ${main.name}`;
    $("init").classList.toggle("unused", !role.takes);
    $("mask-tools").hidden = !role.mask;
    $("mask-canvas").hidden = !role.mask;
    if (!role.mask) this.setTool("");
    $("mask-hint").textContent = role.maskRequired
      ? "Mask: this model repaints the area you paint (required)."
      : "Mask: paint what should change; the rest stays as it is.";
    $("strength-field").hidden = !role.strength;
    $("resize-field").hidden = form.sizeFromImage();

    const items = this.images.slice(1).map((image, offset) => {
      const index = offset + 1;
      const unused = index >= role.cap;
      const label = `Image ${index + 1}: ${image.name}`;
      return element("li", { class: unused ? "unused" : "", title: unused ? `${label} (only edit models use more than one)` : label }, [
        element("img", { src: image.url, alt: label, draggable: "false" }),
        button("", () => this.remove(index), { class: "remove", "aria-label": `Remove image ${index + 1} (${image.name})`, title: "Remove" }, "close"),
      ]);
    });
    $("references").replaceChildren(...items);
    $("references").hidden = items.length === 0;
  },

  // -- the mask: strokes on a canvas of the image's own size, shown over it ----------------------------------

  resetMask() {
    const canvas = $("mask-canvas");
    const main = this.images[0];
    canvas.width = main ? main.width : 1;
    canvas.height = main ? main.height : 1;
    this.painted = false;
    this.stroke = null;
  },

  clearMask({ say = false } = {}) {
    const canvas = $("mask-canvas");
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    this.painted = false;
    if (say) announce("Mask cleared.");
  },

  setTool(tool) {
    this.tool = tool;
    $("mask-brush").setAttribute("aria-pressed", String(tool === "brush"));
    $("mask-erase").setAttribute("aria-pressed", String(tool === "erase"));
    const canvas = $("mask-canvas");
    if (tool) canvas.dataset.tool = tool;
    else delete canvas.dataset.tool;
    if (!tool) this.cursor.hidden = true;
  },

  // The mask as the server takes it: a PNG of the image's size, white where it is repainted; null if empty.
  maskImage() {
    const canvas = $("mask-canvas");
    if (!this.painted || !this.has()) return null;
    const { width, height } = canvas;
    const pixels = canvas.getContext("2d").getImageData(0, 0, width, height).data;
    let any = false;
    for (let i = 3; i < pixels.length && !any; i += 4) any = pixels[i] > 0;
    if (!any) return null;
    const white = element("canvas", { width, height });
    const context = white.getContext("2d");
    context.drawImage(canvas, 0, 0);
    context.globalCompositeOperation = "source-in"; // keep the strokes' coverage, in white
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    const mask = element("canvas", { width, height });
    const out = mask.getContext("2d");
    out.fillStyle = "#000";
    out.fillRect(0, 0, width, height);
    out.drawImage(white, 0, 0);
    return mask.toDataURL("image/png");
  },

  initPainting() {
    const canvas = $("mask-canvas");
    const at = (event) => {
      const box = canvas.getBoundingClientRect();
      return { x: ((event.clientX - box.left) * canvas.width) / box.width, y: ((event.clientY - box.top) * canvas.height) / box.height };
    };
    const paint = (from, to) => {
      const box = canvas.getBoundingClientRect();
      const context = canvas.getContext("2d");
      context.globalCompositeOperation = this.tool === "erase" ? "destination-out" : "source-over";
      context.strokeStyle = context.fillStyle = MASK_COLOUR;
      context.lineWidth = (Number($("brush-size").value) * canvas.width) / box.width; // the size as seen
      context.lineCap = context.lineJoin = "round";
      context.beginPath();
      context.moveTo(from.x, from.y);
      context.lineTo(to.x + 0.01, to.y); // a click paints a dot
      context.stroke();
      if (this.tool === "brush") this.painted = true;
    };
    canvas.addEventListener("pointerdown", (event) => {
      if (!this.tool || event.button > 0) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      const point = at(event);
      this.stroke = { id: event.pointerId, ...point };
      paint(point, point);
    });
    canvas.addEventListener("pointermove", (event) => {
      this.moveCursor(event);
      if (!this.stroke || this.stroke.id !== event.pointerId) return;
      const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
      for (const each of events.length ? events : [event]) {
        const point = at(each);
        paint(this.stroke, point);
        Object.assign(this.stroke, point);
      }
    });
    const end = (event) => {
      if (this.stroke && this.stroke.id === event.pointerId) this.stroke = null;
    };
    canvas.addEventListener("pointerup", end);
    canvas.addEventListener("pointercancel", end);
    canvas.addEventListener("pointerleave", () => (this.cursor.hidden = true));
  },

  // A ring the brush's size follows the pointer over the picture (the size slider shows it in the middle).
  moveCursor(event) {
    const canvas = $("mask-canvas");
    const size = Number($("brush-size").value);
    const box = canvas.getBoundingClientRect();
    if (!this.tool || !box.width) return;
    const x = event ? event.clientX - box.left : box.width / 2;
    const y = event ? event.clientY - box.top : box.height / 2;
    Object.assign(this.cursor.style, { width: `${size}px`, height: `${size}px`, left: `${x}px`, top: `${y}px` });
    this.cursor.hidden = false;
  },

  initDropAndPaste() {
    const zone = $("dropzone");
    const carries = (event) => {
      const types = [...(event.dataTransfer ? event.dataTransfer.types : [])];
      if (types.includes("Files")) return true;
      // A link (a result dragged from its card) unless it is dropped into a text field, which takes it as text.
      const typing = event.target.matches && event.target.matches("input, textarea");
      return types.includes("text/uri-list") && !typing;
    };
    // Anywhere on the page: a file dropped beside the form must not replace the page with the file.
    document.addEventListener("dragover", (event) => {
      if (!carries(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragging");
    });
    document.addEventListener("dragleave", (event) => {
      if (!event.relatedTarget) zone.classList.remove("dragging");
    });
    document.addEventListener("drop", (event) => {
      if (!carries(event)) return;
      event.preventDefault();
      zone.classList.remove("dragging");
      const files = [...event.dataTransfer.files];
      if (files.length) {
        this.take(files);
        return;
      }
      // A result dragged from its card: use that task's image.
      const address = event.dataTransfer.getData("text/uri-list");
      const taskId = address && new URL(address, api.base).searchParams.get("task_id");
      if (taskId && cards.has(taskId)) useAsInput(cards.get(taskId));
    });
    document.addEventListener("paste", (event) => {
      const data = event.clipboardData;
      if (!data) return;
      const files = [...data.items].filter((item) => item.kind === "file" && item.type.startsWith("image/")).map((item) => item.getAsFile());
      if (!files.length) return;
      // Text pasted into a text field stays text; a picture (alone, as a screenshot is) becomes the input.
      const typing = event.target.matches && event.target.matches("input, textarea");
      if (typing && data.types.includes("text/plain")) return;
      event.preventDefault();
      this.take(files);
    });
  },
};

// The size a task sent without width and height will have: the image's, within the model's sides and the server's
// pixels, in the model's size steps (twice the image for an upscale model). As the server computes it.
function sizeFromImage(image, role) {
  const limits = form.limits();
  const info = server.info || {};
  let width = image.width;
  let height = image.height;
  if (role.kind === "upscale") [width, height] = [width * 2, height * 2];
  const maxPixels = info.max_pixels || Infinity;
  let scale = Math.min(1, limits.max_side / Math.max(width, height), Math.sqrt(maxPixels / (width * height)));
  scale = Math.max(scale, limits.min_side / Math.min(width, height));
  const round = (pixels) => Math.max(limits.size_step, Math.floor(pixels / limits.size_step) * limits.size_step);
  return [round(Math.round(width * scale)), round(Math.round(height * scale))];
}

// "Use as input" on a card: its image becomes the input image.
async function useAsInput(card) {
  try {
    const response = await api.request("api/image", { query: { task_id: card.id, delete: "false" }, raw: true });
    const blob = await response.blob();
    const file = new File([blob], fileName(card), { type: blob.type || "image/jpeg" });
    if (await inputs.take([file], { main: true })) {
      $("image-field").scrollIntoView({ block: "nearest" });
      announce(`The image of seed ${card.seed} is now the input image.`);
    }
  } catch (error) {
    inputs.say(`Could not use that image: ${error.message}`, "error");
  }
}

// -- cards: one per task ---------------------------------------------------------------------------------------

const cards = new Map(); // task id -> card (plain data, persisted) with a non-enumerable view
const streams = new Map(); // task id -> EventSource

const PERSISTED = [
  "id", "prompt", "negative_prompt", "seed", "width", "height", "steps", "guidance", "format", "quality",
  "priority", "batch", "index", "status", "error", "model", "input",
];

function storageKey() {
  return `mflux.cards:${api.base}`;
}

function saveCards() {
  const kept = [...cards.values()].sort(byNewest).slice(0, MAX_KEPT_CARDS);
  storage.set(storageKey(), kept.map((card) => Object.fromEntries(PERSISTED.map((name) => [name, card[name]]))));
}

function byNewest(a, b) {
  return b.batch - a.batch || a.index - b.index;
}

function loadCards() {
  for (const id of [...cards.keys()]) dropCard(id, { save: false });
  const saved = storage.get(storageKey(), []);
  if (!Array.isArray(saved)) return;
  for (const data of saved.sort(byNewest)) {
    if (data && typeof data.id === "string") addCard(data, { save: false, restored: true });
  }
  updateEmptyState();
}

function addCard(data, { save = true, restored = false } = {}) {
  const card = { progress: null, wait: null, waitAt: 0, pos: null, ...data };
  Object.defineProperty(card, "view", { value: new CardView(card), enumerable: false });
  cards.set(card.id, card);
  const list = $("cards");
  if (restored) list.append(card.view.root);
  else list.prepend(card.view.root);
  card.view.render();
  // Restored cards ask at once; a new one has just been answered, so its first poll waits for the forecast.
  if (!FINAL.has(card.status)) follow(card, restored ? 0 : pollDelay(card));
  if (save) saveCards();
  updateEmptyState();
  return card;
}

function dropCard(id, { save = true } = {}) {
  const card = cards.get(id);
  if (!card) return;
  closeStream(id);
  scheduler.remove(`card:${id}`);
  card.view.root.remove();
  cards.delete(id);
  if (save) saveCards();
  updateEmptyState();
}

function updateEmptyState() {
  $("empty-state").hidden = cards.size > 0;
  const active = [...cards.values()].filter((card) => !FINAL.has(card.status)).length;
  $("results-count").textContent = cards.size ? `${cards.size}${active ? ` · ${active} in progress` : ""}` : "";
  $("clear-finished").disabled = active === cards.size;
  $("cancel-mine").disabled = active === 0;
}

// Apply what the server says about a task (a /api/status answer, a /api/tasks row, or an event).
function applyStatus(card, status) {
  const before = card.status;
  if (status.status) card.status = status.status;
  if ("pos" in status) card.pos = status.pos;
  if (typeof status.wait_remaining === "number") {
    card.wait = status.wait_remaining;
    card.waitAt = now();
  }
  if ("progress" in status) card.progress = status.progress;
  if ("error" in status) card.error = status.error;
  if (typeof status.model === "string") card.model = status.model;
  if ("loading_model" in status) card.loading_model = status.loading_model || null;
  if (FINAL.has(card.status)) {
    card.cancelling = false;
    card.loading_model = null;
    closeStream(card.id);
    scheduler.remove(`card:${card.id}`);
  }
  card.view.render();
  if (card.status !== before) {
    if (card.status === "running") {
      // One task runs at a time: another card of ours still shown running has most likely finished.
      for (const other of cards.values()) if (other !== card && other.status === "running") scheduler.soon(`card:${other.id}`, 0);
    }
    if (FINAL.has(card.status)) {
      scheduler.soon("queue", 250); // the queue panel should not show it running for seconds more
      scheduler.soon("models", 1000); // which models are loaded may have changed
      saveCards();
      updateEmptyState();
      announceFinal(card);
      promoteStream();
    }
  }
}

function announceFinal(card) {
  const what = `Image seed ${card.seed}`;
  if (card.status === "done") announce(`${what} is ready.`);
  if (card.status === "failed") announce(`${what} failed: ${card.error || "unknown error"}`);
  if (card.status === "cancelled") announce(`${what} was cancelled.`);
}

// How long until the next /api/status of a task: paced by the server's forecast, never hammering.
function pollDelay(card) {
  let seconds;
  if (card.cancelling) seconds = 0.3;
  else if (card.status === "running") seconds = clamp((card.wait ?? 1) / 2, 0.5, 1);
  else seconds = clamp((card.wait ?? 2) / 4, 0.5, 5);
  if (document.hidden) seconds = Math.max(seconds, 5);
  return seconds * 1000;
}

// Follow a task: by its event stream when a stream slot is free, else by polling. Opening a stream is a request
// like any other, so it also waits for its turn in the scheduler.
function follow(card, delay = pollDelay(card)) {
  if (FINAL.has(card.status) || streams.has(card.id)) return;
  scheduler.add(`card:${card.id}`, () => pollCard(card), canStream(card) ? 0 : delay);
}

async function pollCard(card) {
  if (!cards.has(card.id) || FINAL.has(card.status)) return null;
  if (!card.pollFirst && openStream(card)) return null;
  card.pollFirst = false;
  try {
    applyStatus(card, await api.request("api/status", { query: { task_id: card.id }, accept: [410] }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      applyStatus(card, { status: "gone", error: "The server no longer knows this task (expired or reset)." });
      return null;
    }
    throw error;
  }
  if (FINAL.has(card.status)) return null;
  return canStream(card) ? 0 : pollDelay(card);
}

// -- Server-Sent Events, for a few cards at a time ---------------------------------------------------------------

function canStream(card) {
  if (!server.streams || streams.has(card.id) || streams.size >= MAX_STREAMS) return false;
  return !FINAL.has(card.status) && (card.streamFailures || 0) < 3;
}

function openStream(card) {
  if (!canStream(card)) return false;
  api.lastRequest = now();
  const source = new EventSource(api.url("api/events", { task_id: card.id }, { withKey: true }));
  streams.set(card.id, source);
  scheduler.remove(`card:${card.id}`);
  const on = (type, handle) =>
    source.addEventListener(type, (event) => {
      let data = {};
      try {
        data = JSON.parse(event.data || "{}");
      } catch {
        // an event without a JSON body still tells its type
      }
      handle(data);
    });
  source.addEventListener("open", () => {
    card.streamFailures = 0;
    connection.reachable();
  });
  on("queued", (d) => applyStatus(card, { status: "waiting", pos: d.pos, wait_remaining: d.wait_remaining }));
  on("progress", (d) => {
    const update = { status: "running", progress: { step: d.step, steps: d.steps }, wait_remaining: d.wait_remaining };
    if (d.step > 0) update.loading_model = null; // it steps: its model is loaded
    applyStatus(card, update);
    // The stream does not say whether the task waits for its model to load: the queue listing does.
    const entry = picker.models && picker.models[modelName(card)];
    if (d.step === 0 && entry && !entry.loaded) scheduler.soon("queue", 0);
  });
  on("preview", () => card.view.showPreview());
  on("done", () => applyStatus(card, { status: "done", error: null }));
  on("failed", (d) => applyStatus(card, { status: "failed", error: d.error || "failed" }));
  on("cancelled", () => applyStatus(card, { status: "cancelled" }));
  source.addEventListener("error", () => {
    if (streams.get(card.id) !== source) return;
    // Closed by the server after a final event we missed, a network error, or a broken endpoint: a status poll
    // through the scheduler (with its backoff) finds out which, and reopens the stream if it should. A card
    // whose stream keeps failing while the server answers stays with polling.
    closeStream(card.id);
    card.streamFailures = (card.streamFailures || 0) + 1;
    card.pollFirst = true;
    scheduler.add(`card:${card.id}`, () => pollCard(card), 0);
  });
  return true;
}

function closeStream(id) {
  const source = streams.get(id);
  if (!source) return;
  source.close();
  streams.delete(id);
}

function promoteStream() {
  if (!server.streams) return;
  const candidates = [...cards.values()]
    .filter((card) => !FINAL.has(card.status) && !streams.has(card.id))
    .sort((a, b) => (a.status === "running" ? -1 : 0) - (b.status === "running" ? -1 : 0) || (a.pos ?? 1e9) - (b.pos ?? 1e9));
  for (const card of candidates.slice(0, MAX_STREAMS - streams.size)) scheduler.soon(`card:${card.id}`, 0);
}

// -- a card's DOM ---------------------------------------------------------------------------------------------

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children);
  return node;
}

// Small line icons (inline: the page loads nothing from elsewhere). The text beside them names every button.
const ICONS = {
  stop: '<rect x="4" y="4" width="8" height="8" rx="1.5"/>',
  download: '<path d="M8 2.5v7.5M4.5 6.5 8 10l3.5-3.5M3 13.5h10"/>',
  expand: '<path d="M2.5 6V2.5H6M10 2.5h3.5V6M13.5 10v3.5H10M6 13.5H2.5V10"/>',
  again: '<path d="M13 8a5 5 0 1 1-1.46-3.54M13.2 2.3v2.9h-2.9"/>',
  edit: '<path d="M10.5 2.5l3 3L6 13H3v-3z"/>',
  input: '<rect x="2.5" y="2.5" width="11" height="11" rx="2"/><path d="M5 11l2.5-3 2 2 1.5-1.5L13 11"/><circle cx="6" cy="6" r="1"/>',
  close: '<path d="M4 4l8 8M12 4l-8 8"/>',
};

function icon(name) {
  const span = element("span", { class: "icon-svg", "aria-hidden": "true" });
  span.innerHTML =
    '<svg viewBox="0 0 16 16" width="16" height="16" fill="none" stroke="currentColor" stroke-width="1.7" ' +
    `stroke-linecap="round" stroke-linejoin="round">${ICONS[name]}</svg>`;
  return span;
}

function button(label, onClick, attributes = {}, iconName = null) {
  const content = iconName ? [icon(iconName), element("span", { class: "label", text: label })] : [label];
  const node = element("button", { type: "button", class: "button small", ...attributes }, content);
  node.addEventListener("click", onClick);
  return node;
}

function formatSeconds(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 1) return "<1 s";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function slug(text) {
  return (
    text
      .toLowerCase()
      .normalize("NFKD")
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-|-$/g, "")
      .slice(0, 40) || "image"
  );
}

// What a card says of the images its task was sent: "from an image · keep 40% · masked".
function inputText(input) {
  if (!input) return [];
  const what = { upscale: "upscaled", edit: input.images > 1 ? `edit of ${input.images} images` : "edit" }[input.kind];
  return [
    what || (input.images > 1 ? `from ${input.images} images` : "from an image"),
    input.strength === null || input.strength === undefined ? "" : `keep ${Math.round(input.strength * 100)}%`,
    input.mask ? "masked" : "",
  ];
}

function imageUrl(card) {
  return api.url("api/image", { task_id: card.id, delete: "false" }, { withKey: true });
}

function fileName(card) {
  return `${slug(card.prompt)}-${card.seed}.${{ JPEG: "jpg", PNG: "png", WEBP: "webp" }[card.format] || "jpg"}`;
}

class CardView {
  constructor(card) {
    this.card = card;
    const title = `seed ${card.seed}`;
    this.chip = element("span", { class: "chip" });
    this.placeholder = element("div", { class: "placeholder", "aria-hidden": "true" });
    this.preview = element("img", { class: "preview", alt: "", hidden: true, decoding: "async" });
    this.image = element("img", { class: "result", alt: `${card.prompt} (${title})`, decoding: "async" });
    this.openButton = element("button", { type: "button", class: "media-button", hidden: true, "aria-label": `Open full size: ${title}` }, [this.image]);
    this.openButton.addEventListener("click", () => lightbox.open(card));
    this.image.addEventListener("load", () => {
      this.imageFailures = 0;
      this.root.classList.add("loaded");
    });
    this.image.addEventListener("error", () => {
      if (!this.image.getAttribute("src")) return;
      // The server may be restarting: ask about the task (through the scheduler, so with its backoff) and try
      // again; only a few failures in a row while the server answers mean the image is really gone.
      this.imageFailures = (this.imageFailures || 0) + 1;
      if (this.imageFailures > 3) {
        this.imageError = "The image is no longer on the server.";
        this.render();
      } else {
        scheduler.add(`image:${card.id}`, () => this.retryImage(), 0);
      }
    });
    this.media = element("div", { class: "media" }, [this.placeholder, this.preview, this.openButton, this.chip]);
    this.media.style.aspectRatio = `${card.width} / ${card.height}`;

    this.bar = element("progress", { class: "bar", max: "1", "aria-label": `Progress, ${title}` });
    this.statusText = element("p", { class: "status-text" });
    this.prompt = element("p", { class: "prompt", title: card.prompt, text: card.prompt });
    this.meta = element("p", { class: "meta" });

    this.cancelButton = button("Cancel", () => cancelCard(card), { class: "button small cancel", "aria-label": `Cancel ${title}` }, "stop");
    this.download = element("a", { class: "button small", download: fileName(card), "aria-label": `Download ${title}`, title: "Download" }, [
      icon("download"), element("span", { class: "label", text: "Download" }),
    ]);
    this.download.addEventListener("click", (event) => downloadCrossOrigin(event, card));
    this.fullButton = button("Full size", () => lightbox.open(card), { class: "button small full", "aria-label": `Full size ${title}`, title: "Full size" }, "expand");
    this.againButton = button("New seed", () => resubmit(card), {
      "aria-label": `Same prompt, new seed (from ${title})`,
      title: "Same prompt and settings, a new random seed",
    }, "again");
    this.reuseButton = button("Edit", () => form.fill(card), {
      "aria-label": `Edit: put the settings of ${title} in the form`,
      title: "Put this prompt and its settings in the form",
    }, "edit");
    this.useButton = button("Use as input", () => useAsInput(card), {
      "aria-label": `Use as input: start from the image of ${title}`,
      title: "Make this image the input image",
    }, "input");
    this.removeButton = button("", () => dropCard(card.id), { class: "remove", "aria-label": `Remove ${title} from this page`, title: "Remove" }, "close");
    this.media.append(this.removeButton);
    this.actions = element("div", { class: "actions" }, [
      this.cancelButton, this.download, this.fullButton, this.againButton, this.reuseButton, this.useButton,
    ]);
    const body = element("div", { class: "body" }, [this.bar, this.statusText, this.prompt, this.meta, this.actions]);
    this.root = element("li", { class: "card", "data-task-id": card.id }, [this.media, body]);
  }

  async retryImage() {
    const card = this.card;
    if (!cards.has(card.id)) return null;
    let status;
    try {
      status = await api.request("api/status", { query: { task_id: card.id }, accept: [410] });
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      applyStatus(card, { status: "gone", error: "The server no longer knows this task (expired or reset)." });
      return null;
    }
    if (status.status === "done") this.image.src = api.url("api/image", { task_id: card.id, delete: "false", try: this.imageFailures }, { withKey: true });
    else applyStatus(card, status);
    return null;
  }

  showPreview() {
    const card = this.card;
    if (!server.previews || card.status !== "running") return;
    // The server forgets a preview when its task ends: one asked for in the task's last second would often
    // answer 404 (an error in the console), and the finished image is about to replace it anyway.
    const left = card.wait - (now() - card.waitAt) / 1000;
    if (!(left > PREVIEW_MIN_SECONDS) || (card.progress && card.progress.step >= card.progress.steps)) return;
    // Load off-screen first so a slow or missing preview never blanks the one on show.
    const next = new Image();
    next.addEventListener("load", () => {
      if (this.card.status !== "running") return;
      this.preview.src = next.src;
      this.preview.hidden = false;
    });
    this.previewCount = (this.previewCount || 0) + 1;
    next.src = api.url("api/preview", { task_id: this.card.id, n: this.previewCount }, { withKey: true });
  }

  render() {
    const card = this.card;
    const status = card.cancelling && !FINAL.has(card.status) ? "cancelling" : card.status;
    this.root.dataset.status = card.status;
    this.chip.textContent = status === "cancelling" ? "Cancelling" : STATUS_LABEL[card.status] || card.status;
    const meta = [
      `seed ${card.seed}`, `${card.width}×${card.height}`, `${card.steps} steps`, card.format, card.priority ? "priority" : "",
      ...inputText(card.input),
    ].filter(Boolean).join(" · ");
    if (this.metaText !== `${card.model}|${meta}`) {
      this.metaText = `${card.model}|${meta}`;
      const model = card.model ? [element("span", { class: "model-name", title: "Model", text: card.model }), " · "] : [];
      this.meta.replaceChildren(...model, meta);
    }

    const done = card.status === "done";
    if (done && !this.image.getAttribute("src")) {
      this.image.src = imageUrl(card);
      this.download.href = imageUrl(card);
    }
    this.openButton.hidden = !done || Boolean(this.imageError);
    if (card.status !== "running") this.preview.hidden = true;

    const active = !FINAL.has(card.status);
    this.bar.hidden = !active;
    this.cancelButton.hidden = !active;
    this.cancelButton.disabled = Boolean(card.cancelling);
    this.download.hidden = !done || Boolean(this.imageError);
    this.fullButton.hidden = !done || Boolean(this.imageError);
    // A task sent with images is sent again with them while this page still holds them (not after a reload).
    this.againButton.hidden = active || Boolean(card.input && !inputs.kept.has(card.batch));
    this.useButton.hidden = !done || Boolean(this.imageError);
    this.removeButton.hidden = active;

    const progress = card.progress;
    if (card.status === "running" && progress && progress.steps) {
      this.bar.max = progress.steps;
      this.bar.value = progress.step;
    } else if (done) {
      this.bar.max = 1;
      this.bar.value = 1;
    } else {
      this.bar.removeAttribute("value"); // indeterminate while waiting or starting
    }
    this.renderText();
  }

  // Also called every second, to count down between updates from the server.
  renderText() {
    const card = this.card;
    const left = card.wait === null ? NaN : Math.max(card.wait - (now() - card.waitAt) / 1000, 0);
    const eta = Number.isFinite(left) ? `~${formatSeconds(left)}` : "";
    const loading = card.loading_model;
    let text;
    switch (card.status) {
      case "waiting":
        text = [
          card.pos === null || card.pos === undefined ? "In queue" : `#${card.pos + 1} in queue`,
          loading && `then loading ${loading}…`, // its model is loaded when its turn comes
          eta,
        ];
        break;
      case "running":
        if (loading) text = [`Loading ${loading}…`, eta && `${eta} left`];
        else if (card.progress && card.progress.step > 0) text = [`Step ${card.progress.step}/${card.progress.steps}`, eta && `${eta} left`];
        else text = ["Starting", eta && `${eta} left`];
        break;
      case "done":
        text = [this.imageError || "Done"];
        break;
      case "failed":
        text = [card.error || "Failed"];
        break;
      case "cancelled":
        text = ["Cancelled"];
        break;
      default:
        text = [card.error || card.status];
    }
    if (card.cancelling && !FINAL.has(card.status)) text = ["Cancelling…"];
    const line = text.filter(Boolean).join(" · ");
    if (this.statusText.textContent !== line) this.statusText.textContent = line;
    this.bar.setAttribute("aria-valuetext", line);
  }
}

// -- card actions ----------------------------------------------------------------------------------------------

async function cancelCard(card) {
  card.cancelling = true;
  card.view.render();
  try {
    const answer = await api.request("api/cancel", { query: { task_id: card.id } });
    applyStatus(card, { status: answer.status });
    // A running task stops at its next step: keep following it until the server says it is over.
    if (!FINAL.has(card.status) && !streams.has(card.id)) follow(card, 300);
  } catch (error) {
    card.cancelling = false;
    card.view.render();
    if (error instanceof ApiError && error.status === 404) applyStatus(card, { status: "gone", error: error.message });
    else announce(`Could not cancel: ${error.message}`);
  }
}

async function downloadCrossOrigin(event, card) {
  // <a download> only works for the page's own origin; from a file or another host, fetch the bytes instead.
  if (new URL(card.view.download.href).origin === location.origin) return;
  event.preventDefault();
  try {
    const response = await api.request("api/image", { query: { task_id: card.id, delete: "false" }, raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = element("a", { href: url, download: fileName(card) });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    announce(`Download failed: ${error.message}`);
  }
}

function resubmit(card) {
  const params = Object.fromEntries(
    ["prompt", "negative_prompt", "width", "height", "steps", "guidance", "format", "quality", "priority"].map((n) => [n, card[n]]),
  );
  const kept = card.input ? inputs.kept.get(card.batch) : null; // with the images it was sent
  submit({ ...params, ...modelRequest(card) }, 1, randomSeed(1), kept); // on the model it ran on
}

const lightbox = {
  open(card) {
    const dialog = $("lightbox");
    const url = imageUrl(card);
    $("lightbox-image").src = url;
    $("lightbox-image").alt = `${card.prompt} (seed ${card.seed})`;
    $("lightbox-caption").textContent = `${card.prompt} · seed ${card.seed} · ${card.width}×${card.height}`;
    $("lightbox-open").href = url;
    this.returnFocus = document.activeElement;
    dialog.showModal();
  },
  init() {
    const dialog = $("lightbox");
    // A click on the backdrop (the dialog itself, outside its content) closes it.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => {
      $("lightbox-image").removeAttribute("src");
      if (this.returnFocus && this.returnFocus.focus) this.returnFocus.focus();
    });
  },
};

// -- the queue panel: what the server does for everyone ---------------------------------------------------------

async function refreshQueue() {
  if (document.hidden) return null; // picked up again when the tab is visible
  const response = await api.request("api/tasks", { query: { limit: 50, status: ["running", "waiting"] }, raw: true });
  const tasks = await response.json();
  const total = Number(response.headers.get("X-Total-Count") ?? tasks.length);
  renderQueue(tasks, total);
  scheduler.add("workers", refreshWorkers, 0); // the workers panel follows the queue panel's every refresh
  // The listing is also fresh news about our own waiting cards: no need to ask for them one by one soon.
  for (const task of tasks) {
    const card = cards.get(task.task_id);
    if (!card || FINAL.has(card.status) || card.cancelling) continue;
    if (streams.has(card.id)) {
      // Its stream reports steps, not the model it waits for: take that from here.
      applyStatus(card, { model: task.model, loading_model: task.loading_model });
    } else {
      applyStatus(card, task);
      scheduler.postpone(`card:${card.id}`, pollDelay(card));
    }
  }
  const loading = [...cards.values()].some((card) => card.loading_model && !FINAL.has(card.status));
  return loading ? QUEUE_LOADING_EVERY_MS : QUEUE_EVERY_MS;
}

function renderQueue(tasks, total) {
  const running = tasks.filter((task) => task.status === "running").length;
  const waiting = Math.max(total - running, 0);
  connection.summary = total ? `online · ${running} running · ${waiting} waiting` : "online · idle";
  connection.render();
  $("queue-summary").textContent = total > tasks.length ? `showing ${tasks.length} of ${total}` : "";
  $("queue-empty").hidden = tasks.length > 0;
  $("queue-table").hidden = tasks.length === 0;
  const rows = tasks.map((task) => {
    // Another API key's task (the server decides whose is whose): where it stands and what it costs, no more.
    const other = Boolean(task.anonymous);
    const mine = !other && cards.has(task.task_id);
    const progress = task.progress;
    const steps = task.status === "running" && progress ? `${progress.step}/${progress.steps}` : String(task.steps);
    const where = task.status === "running" ? "▶" : String((task.pos ?? 0) + 1);
    const who = mine
      ? element("span", { class: "tag", text: "you" })
      : other
        ? element("span", { class: "tag tag-other", text: "other", title: "another API key's task" })
        : "";
    // A running task whose model is being loaded for it is "loading" (a waiting one waits, then loads).
    const state = task.loading_model && task.status === "running" ? "loading" : task.status;
    const status = element("td", {}, [element("span", { class: `state state-${state}`, text: state }), " ", who]);
    const modelCell = element("td", {
      class: "model-cell",
      text: task.model || "",
      title: task.loading_model ? `${task.model}: loading ${task.loading_model}…` : task.model || "",
    });
    const row = element("tr", { class: mine ? "mine" : other ? "other" : "" }, [
      element("td", { text: where }),
      status,
      modelCell,
      element("td", { text: `${task.width}×${task.height}` }),
      element("td", { text: steps }),
      element("td", { text: `~${formatSeconds(task.wait_remaining)}` }),
    ]);
    row.title = mine ? `Yours: ${task.prompt}` : other ? "Another API key's task: only where it stands is shown" : "";
    return row;
  });
  $("queue-body").replaceChildren(...rows);
}

// -- the workers panel: who renders, with which model, how far (GET /api/workers) --------------------------------
// Refreshed right after every queue refresh, as its own request (the scheduler keeps the pace).

const WORKER_STATE = {
  ready: "ready",
  busy: "rendering",
  loading: "loading",
  starting: "starting",
  joining: "joining",
  lost: "lost",
  refused: "refused",
  failed: "failed",
};

async function refreshWorkers() {
  if (document.hidden) return null;
  let workers;
  try {
    workers = await api.request("api/workers");
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      $("workers-panel").hidden = true; // an older server: no such listing
      return null;
    }
    throw error;
  }
  renderWorkers(workers);
  return null;
}

function workerTask(worker) {
  if (worker.steps === null || worker.steps === undefined) {
    if (worker.loading) return element("span", { class: "hint", text: `loading ${worker.loading}…` });
    return element("span", { class: "hint", text: worker.error || "idle" });
  }
  const whose = worker.task_id === null ? "another key's task" : cards.has(worker.task_id) ? "your task" : "a task";
  const bar = element("progress", { class: "worker-progress", max: String(worker.steps), value: String(worker.step) });
  bar.setAttribute("aria-label", `${worker.name}: step ${worker.step} of ${worker.steps}`);
  return element("span", { class: "worker-task" }, [
    bar,
    element("span", { text: ` ${worker.step}/${worker.steps} · ${whose}` }),
  ]);
}

function renderWorkers(workers) {
  $("workers-panel").hidden = false;
  $("workers-empty").hidden = workers.length > 0;
  const ready = workers.filter((worker) => ["ready", "busy", "loading"].includes(worker.state)).length;
  $("workers-summary").textContent = workers.length ? `${ready} of ${workers.length} working` : "";
  const items = workers.map((worker) => {
    const state = WORKER_STATE[worker.state] || worker.state;
    const model = worker.warm.length ? worker.warm.join(", ") : "no model loaded";
    return element("li", { class: "worker", "data-state": worker.state }, [
      element("div", { class: "worker-head" }, [
        element("strong", { class: "worker-name", text: worker.name }),
        element("span", { class: `state state-${worker.state}`, text: state }),
      ]),
      element("div", { class: "worker-model hint", text: model, title: worker.remote ? `on ${worker.host}` : "this server" }),
      workerTask(worker),
    ]);
  });
  $("workers-list").replaceChildren(...items);
}

// -- the form ----------------------------------------------------------------------------------------------------

function randomSeed(count) {
  const value = crypto.getRandomValues(new Uint32Array(1))[0];
  return value % (MAX_SEED - count + 2); // room for seeds n … n+count-1
}

const FORM_FIELDS = [
  "size-preset", "width", "height", "count", "seed", "seed-random", "format", "quality", "priority", "guidance",
  "negative-prompt", "prompt", "strength", "resize", "brush-size",
];

const form = {
  stepsTouched: false,

  init() {
    const saved = storage.get("mflux.form", {});
    for (const id of FORM_FIELDS) {
      if (!(id in saved)) continue;
      const input = $(id);
      if (input.type === "checkbox") input.checked = Boolean(saved[id]);
      else input.value = saved[id];
    }
    $("size-preset").addEventListener("change", () => this.presetChanged());
    for (const id of ["width", "height"]) $(id).addEventListener("input", () => this.matchPreset());
    $("seed-random").addEventListener("change", () => this.sync());
    $("format").addEventListener("change", () => this.sync());
    $("steps").addEventListener("input", () => (this.stepsTouched = true));
    $("generate-form").addEventListener("input", () => this.save());
    $("generate-form").addEventListener("change", () => this.save());
    // On a phone the options start folded, so the prompt and Generate fit on the first screen.
    $("options").open = !matchMedia("(max-width: 600px)").matches;
    $("prompt").addEventListener("keydown", (event) => {
      // Enter generates; Shift+Enter is a new line; never while an input method is composing a character.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("generate-form").requestSubmit();
      }
    });
    $("generate-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.matchPreset();
    this.sync();
  },

  save() {
    this.summarise();
    const values = {};
    for (const id of FORM_FIELDS) values[id] = $(id).type === "checkbox" ? $(id).checked : $(id).value;
    storage.set("mflux.form", values);
  },

  presetChanged() {
    const value = $("size-preset").value;
    if (value === "image") {
      inputs.render();
    } else if (value !== "custom") {
      const [width, height] = value.split("x");
      $("width").value = width;
      $("height").value = height;
    } else {
      $("width").focus();
    }
    this.sync();
  },

  // With an image the size follows it unless the person chose one; without, the preset the width and height match.
  imagesChanged({ added }) {
    if (added) {
      $("size-preset").value = "image";
    } else if ($("size-preset").value === "image") {
      this.matchPreset();
    }
    this.renderSizeOption();
    this.sync();
  },

  sizeFromImage() {
    return $("size-preset").value === "image" && inputs.has();
  },

  renderSizeOption() {
    const option = $("size-from-image");
    const main = inputs.images[0];
    option.hidden = option.disabled = !main;
    if (!main) {
      option.textContent = "From the image";
      return;
    }
    const role = imageRole();
    const [width, height] = sizeFromImage(main, role);
    option.textContent = `${role.kind === "upscale" ? "2× the image" : "From the image"} · ${width} × ${height}`;
  },

  matchPreset() {
    if ($("size-preset").value === "image" && inputs.has()) return;
    const key = `${$("width").value}x${$("height").value}`;
    const preset = [...$("size-preset").options].find((option) => option.value === key);
    $("size-preset").value = preset ? key : "custom";
  },

  // The bounds and defaults of the picked model within the server's limits (the server's own when it lists none).
  limits() {
    const info = server.info || {};
    const entry = picker.entry();
    const serverMax = info.max_side ?? 2560;
    return {
      min_side: Math.max(info.min_side ?? 64, (entry && entry.min_side) || 0),
      max_side: Math.min(serverMax, (entry && entry.max_side) || serverMax),
      size_step: (entry && entry.size_step) || info.size_step || 16,
      max_steps: info.max_steps ?? 100,
      default_steps: entry ? entry.steps : info.default_steps,
      default_guidance: entry ? entry.default_guidance : info.default_guidance,
      guidance_adjustable: entry ? Boolean(entry.guidance_adjustable) : info.guidance_adjustable !== false,
      supports_negative_prompt: entry ? Boolean(entry.supports_negative_prompt) : Boolean(info.supports_negative_prompt),
    };
  },

  // Bounds, defaults and the fields the picked model takes. `reset`: its default steps and guidance replace the
  // form's (a model was picked); otherwise steps follow the default until the person sets them.
  applyLimits({ reset = false } = {}) {
    if (!server.info) return;
    const limits = this.limits();
    for (const side of ["width", "height"]) {
      const input = $(side);
      input.min = limits.min_side;
      input.max = limits.max_side;
      input.step = limits.size_step;
      const value = Number(input.value);
      if (reset && Number.isFinite(value) && (value < limits.min_side || value > limits.max_side)) {
        const clamped = clamp(value, limits.min_side, limits.max_side);
        input.value = Math.max(limits.min_side, clamped - (clamped % limits.size_step));
      }
    }
    for (const option of $("size-preset").options) {
      if (option.value === "custom") continue;
      const sides = option.value.split("x").map(Number);
      option.disabled = sides.some((side) => side < limits.min_side || side > limits.max_side);
    }
    $("steps").max = limits.max_steps;
    if (limits.default_steps && (reset || !this.stepsTouched)) $("steps").value = limits.default_steps;
    if (reset) {
      this.stepsTouched = false;
      $("guidance").value = limits.guidance_adjustable && limits.default_guidance !== null ? limits.default_guidance ?? "" : "";
    }
    const guidance = limits.default_guidance;
    $("guidance").placeholder = guidance === null || guidance === undefined ? "default" : `default ${guidance}`;
    $("guidance-field").hidden = !limits.guidance_adjustable;
    $("negative-field").hidden = !limits.supports_negative_prompt;
    this.matchPreset();
    this.summarise();
    picker.render();
    this.renderSizeOption();
    inputs.render();
  },

  sync() {
    $("seed").disabled = $("seed-random").checked;
    $("quality").disabled = $("format").value === "PNG";
    $("size-fields").hidden = this.sizeFromImage();
    $("resize-field").hidden = this.sizeFromImage();
    this.renderSizeOption();
    this.summarise();
  },

  // The closed options still say what they are set to.
  summarise() {
    const format = $("format").value;
    $("options-summary").textContent = [
      this.sizeFromImage() ? "size of the image" : `${$("width").value}×${$("height").value}`,
      `${$("steps").value} steps`,
      $("seed-random").checked ? "random seed" : `seed ${$("seed").value}`,
      format === "PNG" ? format : `${format} ${$("quality").value}`,
      $("priority").checked ? "priority" : "",
    ].filter(Boolean).join(" · ");
  },

  fill(card) {
    const kept = card.input ? inputs.kept.get(card.batch) : null;
    if (kept) inputs.restore(kept.snapshot);
    if (picker.models && modelName(card) in picker.models) {
      picker.pick(modelName(card));
      storage.set("mflux.model", picker.picked);
      this.applyLimits();
    }
    $("prompt").value = card.prompt;
    $("negative-prompt").value = card.negative_prompt || "";
    $("width").value = card.width;
    $("height").value = card.height;
    $("steps").value = card.steps;
    this.stepsTouched = true;
    $("format").value = card.format;
    $("quality").value = card.quality;
    $("priority").checked = Boolean(card.priority);
    $("guidance").value = card.guidance ?? "";
    $("seed").value = card.seed;
    $("seed-random").checked = false;
    if (kept && card.input.strength !== null) $("strength").value = Math.round(card.input.strength * 100);
    inputs.renderStrength();
    $("size-preset").value = "custom"; // the card's own size
    this.matchPreset();
    inputs.changed();
    this.save();
    $("prompt").focus();
    const lost = card.input && !kept ? " Its input image is not kept after a reload: add it again." : "";
    announce(`Settings copied to the form.${lost}`);
    if (lost) inputs.say(lost.trim(), "warn");
  },

  // Read and check the form; on a problem, say which field and put the focus there.
  read() {
    const fail = (id, message) => {
      this.message(message);
      $(id).focus();
      return null;
    };
    const info = this.limits();
    const integer = (id) => (/^\s*\d+\s*$/.test($(id).value) ? Number($(id).value) : NaN);
    const prompt = $("prompt").value.trim();
    if (!prompt) return fail("prompt", "Write a prompt first.");
    const values = { prompt };
    const sizeFromImage = this.sizeFromImage();
    for (const side of sizeFromImage ? [] : ["width", "height"]) {
      const value = integer(side);
      if (!(value >= info.min_side && value <= info.max_side)) {
        return fail(side, `${side[0].toUpperCase() + side.slice(1)} must be between ${info.min_side} and ${info.max_side}.`);
      }
      values[side] = value;
    }
    const steps = integer("steps");
    if (!(steps >= 1 && steps <= info.max_steps)) return fail("steps", `Steps must be between 1 and ${info.max_steps}.`);
    values.steps = steps;
    const count = integer("count");
    if (!(count >= 1 && count <= MAX_IMAGES)) return fail("count", `Number of images must be between 1 and ${MAX_IMAGES}.`);
    let seed = null;
    if (!$("seed-random").checked) {
      seed = integer("seed");
      if (!(seed >= 0 && seed <= MAX_SEED - count + 1)) {
        return fail("seed", `Seed must be between 0 and ${MAX_SEED - count + 1} for ${count} image(s).`);
      }
    }
    values.format = $("format").value;
    const quality = integer("quality");
    if (values.format !== "PNG" && !(quality >= 1 && quality <= 100)) return fail("quality", "Quality must be between 1 and 100.");
    values.quality = quality || 90;
    values.priority = $("priority").checked;
    if (picker.entry()) values.model = picker.picked;
    const guidance = $("guidance").value.trim();
    if (guidance && !$("guidance-field").hidden) {
      const number = Number(guidance);
      if (!(number >= 0 && number <= 30)) return fail("guidance", "Guidance must be between 0 and 30.");
      values.guidance = number;
    }
    const negative = $("negative-prompt").value.trim();
    if (negative && !$("negative-field").hidden) values.negative_prompt = negative;
    const images = inputs.request({ sizeFromImage });
    if (images.problem) return fail("image-file", images.problem);
    return { values, count, seed: seed ?? randomSeed(count), images: images.summary ? images : null };
  },

  message(text) {
    $("form-message").textContent = text;
  },

  async submit() {
    this.message("");
    const read = this.read();
    if (!read) return;
    const generate = $("generate");
    generate.disabled = true;
    generate.textContent = read.count > 1 ? `Queuing ${read.count}…` : "Queuing…";
    try {
      await submit(read.values, read.count, read.seed, read.images);
    } finally {
      generate.disabled = false;
      generate.textContent = "Generate";
    }
  },
};

// Queue `count` tasks with seeds seed, seed+1, …; a card appears for each as soon as the server accepts it.
// `images`: the input images' fields of the body, what the cards say of them, and what "Edit" puts back.
async function submit(values, count, seed, images = null) {
  const batch = Date.now();
  if (images) inputs.keep(batch, images);
  let queued = 0;
  try {
    for (let index = 0; index < count; index++) {
      const body = { ...values, seed: seed + index };
      const answer = await api.request("api/generate", { method: "POST", body: images ? { ...body, ...images.fields } : body });
      // Newest batch first, a batch in seed order: each new card goes right after its predecessor.
      const previous = [...cards.values()].find((c) => c.batch === batch && c.index === index - 1);
      const card = addCard({
        ...body,
        id: answer.task_id,
        seed: answer.seed,
        width: answer.width,
        height: answer.height,
        steps: answer.steps,
        guidance: answer.guidance,
        model: answer.model ?? body.model, // the variant it runs on, e.g. "dev@q8"
        input: images ? images.summary : null,
        status: answer.status,
        error: null,
        wait: answer.expected_time_seconds,
        waitAt: now(),
        batch,
        index,
      }, { save: false });
      if (previous) previous.view.root.after(card.view.root);
      queued++;
    }
    saveCards();
    announce(queued === 1 ? "1 image queued." : `${queued} images queued.`);
  } catch (error) {
    saveCards();
    let text = error.message;
    if (error instanceof NetworkError) text = "Cannot reach the server. Is it running? (Server address is in the header.)";
    if (error instanceof ApiError && error.status === 429) {
      const after = error.headers && error.headers.get("Retry-After");
      text = `The queue is full${after ? `; try again in ${after} s` : ""}. ${error.message}`;
    }
    form.message(queued ? `Queued ${queued} of ${count}. ${text}` : text);
    return;
  }
  scheduler.add("queue", refreshQueue, 300); // show the new tasks in the queue panel soon
}

// -- page-wide controls ------------------------------------------------------------------------------------------

function announce(text) {
  const region = $("announcer");
  region.textContent = "";
  // A new text node in a later frame makes screen readers speak a repeated message too.
  requestAnimationFrame(() => (region.textContent = text));
}

function clearFinished() {
  const finished = [...cards.values()].filter((card) => FINAL.has(card.status));
  for (const card of finished) dropCard(card.id, { save: false });
  saveCards();
  announce(finished.length === 1 ? "Removed 1 finished card." : `Removed ${finished.length} finished cards.`);
}

async function cancelMine() {
  const active = [...cards.values()].filter((card) => !FINAL.has(card.status));
  for (const card of active) await cancelCard(card);
}

function connectTo(base) {
  for (const id of [...streams.keys()]) closeStream(id);
  scheduler.jobs.clear();
  scheduler.backoff = 0;
  scheduler.pausedUntil = 0;
  api.base = base;
  server.info = null;
  server.probed = false;
  server.streams = false;
  picker.reset();
  connection.state = "unknown";
  connection.summary = "";
  connection.render();
  // The engine label and the queue first, then the restored cards (ties go to the job added first).
  scheduler.add("info", loadInfo, 0);
  scheduler.add("queue", refreshQueue, 0);
  loadCards();
}

function initServerSettings() {
  const saved = storage.get("mflux.server", "");
  $("server-url").value = saved;
  $("server-url").placeholder = pageBase().replace(/\/$/, "");
  $("server-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("server-url").value.trim();
    let base = pageBase();
    if (text) {
      try {
        base = normaliseBase(text);
      } catch {
        $("server-url").setCustomValidity("An http:// or https:// address");
        $("server-url").reportValidity();
        return;
      }
    }
    $("server-url").setCustomValidity("");
    storage.set("mflux.server", text);
    $("server-settings").open = false;
    connectTo(base);
    announce(`Connecting to ${base}`);
  });
  $("api-key-button").addEventListener("click", () => keyDialog.ask({ force: true }));
  $("key-cancel").addEventListener("click", () => $("key-dialog").close("cancel"));
  if (saved) {
    try {
      return normaliseBase(saved);
    } catch {
      // a stored address that no longer parses: fall back to the page's server
    }
  }
  return pageBase();
}

function init() {
  form.init();
  picker.init();
  inputs.init();
  lightbox.init();
  $("clear-finished").addEventListener("click", clearFinished);
  $("cancel-mine").addEventListener("click", cancelMine);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      scheduler.add("queue", refreshQueue, 0);
      if (picker.models) scheduler.add("models", loadModels, 0);
      for (const card of cards.values()) scheduler.soon(`card:${card.id}`, 0);
    }
  });
  // One timer for every countdown on the page; it makes no requests.
  setInterval(() => {
    for (const card of cards.values()) if (!FINAL.has(card.status)) card.view.renderText();
    if (connection.state === "offline") connection.render();
  }, 1000);
  connectTo(initServerSettings());
}

// Loaded with `defer` this runs after parsing; the file:// fallback loads it later, possibly before.
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
