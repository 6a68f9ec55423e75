/*
 * esteira.js — Esteira's browser client. No build step, no framework.
 *
 * As a classic script it defines window.Esteira; as an ES module, import from esteira.mjs.
 *
 *  - Esteira.RupturaClient: starts a ruptura session, follows it (long polls that answer with
 *    each batch, or the event stream), calls back once per order result, and falls back by
 *    itself to the synchronous per-order endpoint when the queue path fails.
 *  - Esteira.RupturaWorkerAddon: the seed's add-on. Switched on by
 *    <meta name="ruptura-workers" content="true"> or window.RUPTURA_USE_WORKERS = true, it
 *    analyses every element with data-ruptura-pedido on the page, shows a progress bar
 *    (bottom right) and a "Workers Ativos (N)" badge (top right), and updates each element's
 *    badge as its result arrives. Without the switch it does nothing.
 *  - Esteira.OsLookup and Esteira.showOsModal: an OS lookup with a progress modal (stages,
 *    percentage, success, error, cancel).
 *  - Esteira.setApiKey(key): every request then sends `Authorization: Bearer <key>`; a page may
 *    instead carry <meta name="esteira-api-key" content="...">. EventSource cannot send that
 *    header, so with a key the clients long-poll instead of following the event stream.
 *  Long polls (`wait`): the gateway holds the answer until something changed; when it answers
 *  with nothing new (it could not wait), the clients wait pollMs before asking again.
 *  - Esteira.request(url, options): fetch with the key, answering { status, ok, body }.
 */
(function (global) {
  "use strict";

  function baseUrl(value) {
    return (value || "").replace(/\/$/, "");
  }

  let apiKey = null;
  const LONG_POLL_SECONDS = 20;
  if (typeof document !== "undefined") {
    const meta = document.querySelector('meta[name="esteira-api-key"]');
    if (meta && meta.content) { apiKey = meta.content; }
  }

  function setApiKey(key) { apiKey = key || null; }

  async function request(url, options) {
    const headers = { "Content-Type": "application/json" };
    if (apiKey) { headers.Authorization = "Bearer " + apiKey; }
    const response = await fetch(url, Object.assign({ headers: headers }, options));
    let body = null;
    try { body = await response.json(); } catch (ignored) { body = null; }
    return { status: response.status, ok: response.ok, body: body };
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  class RupturaClient {
    constructor(options) {
      const o = options || {};
      this.base = baseUrl(o.baseUrl);
      this.pollMs = o.pollMs || 2000;
      this.useEvents = Boolean(o.useEvents) && typeof EventSource !== "undefined" && !apiKey;
      this.onResult = o.onResult || function () {};
      this.onProgress = o.onProgress || function () {};
      this.onWorkers = o.onWorkers || function () {};
      this.onFallback = o.onFallback || function () {};
      this.mode = o.mode || "independent";
      this.stopped = false;
    }

    stop() { this.stopped = true; }

    async workers() {
      try {
        const answer = await request(this.base + "/api/v1/queues");
        if (!answer.ok) { return null; }
        const ruptura = answer.body.queues.find(function (q) { return q.pool === "ruptura"; });
        return ruptura ? ruptura.workers_online : null;
      } catch (ignored) { return null; }
    }

    async run(pedidos) {
      const wanted = Array.from(new Set(pedidos.map(String)));
      const delivered = new Set();
      const deliver = (result) => {
        if (delivered.has(result.num_pedido)) { return; }
        delivered.add(result.num_pedido);
        this.onResult(result);
        this.onProgress(delivered.size, wanted.length);
      };
      this.onProgress(0, wanted.length);
      try {
        await this.viaQueue(wanted, deliver);
      } catch (error) {
        if (this.stopped) { return delivered.size; }
        this.onFallback(error);
        await this.perOrder(wanted.filter(function (n) { return !delivered.has(n); }), deliver);
      }
      return delivered.size;
    }

    async viaQueue(wanted, deliver) {
      const started = await request(this.base + "/api/v1/ruptura/sessions", {
        method: "POST", body: JSON.stringify({ pedidos: wanted, mode: this.mode }),
      });
      if (started.status === 200 && started.body && started.body.mode === "inline") {
        started.body.results.forEach(deliver);  // the gateway analysed them itself
        return;
      }
      if (started.status !== 202) { throw new Error("session not started: " + started.status); }
      const sessionId = started.body.session_id;
      let offset = 0;
      let failures = 0;
      const longPoll = this.useEvents ? "" : "&wait=" + LONG_POLL_SECONDS;
      while (!this.stopped) {
        let page;
        let fresh = false;
        try {
          page = await request(this.base + "/api/v1/ruptura/sessions/" + sessionId + "/results?offset=" + offset + longPoll);
        } catch (error) { page = { ok: false, status: 0 }; }
        if (!page.ok) {
          failures += 1;
          if (failures >= 2) { throw new Error("results unavailable: " + page.status); }
        } else {
          failures = 0;
          fresh = page.body.results.length > 0;
          page.body.results.forEach(deliver);
          offset = page.body.next_offset;
          if (page.body.done) { return; }
        }
        const workers = await this.workers();
        if (workers !== null) { this.onWorkers(workers); }
        if (this.useEvents || !fresh) { await this.wait(sessionId); }
      }
    }

    wait(sessionId) {
      if (!this.useEvents) { return sleep(this.pollMs); }
      // Wake up at the next progress event, or after pollMs at the latest.
      return new Promise((resolve) => {
        const source = new EventSource(this.base + "/api/v1/ruptura/sessions/" + sessionId + "/events");
        const done = () => { source.close(); resolve(); };
        const timer = setTimeout(done, this.pollMs);
        let first = true;
        source.addEventListener("progress", () => {
          if (first) { first = false; return; }  // the first event is the state now
          clearTimeout(timer); done();
        });
        source.onerror = () => { clearTimeout(timer); done(); };
      });
    }

    async perOrder(numbers, deliver) {
      // The synchronous endpoint, four at a time, as the page did before workers existed.
      const queue = numbers.slice();
      const run = async () => {
        while (queue.length && !this.stopped) {
          const number = queue.shift();
          const answer = await request(this.base + "/api/v1/ruptura/orders/" + encodeURIComponent(number) + "?mode=" + this.mode);
          if (answer.ok) {
            deliver(answer.body);
          } else {
            deliver({ num_pedido: number, status: "nao_encontrado", erro: (answer.body && answer.body.error && answer.body.error.message) || "erro" });
          }
        }
      };
      await Promise.all([run(), run(), run(), run()]);
    }
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) { node.setAttribute(name, attributes[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  class ProgressBar {
    constructor() {
      this.box = element("div", { class: "esteira-progress", role: "status", "aria-live": "polite" });
      this.label = element("span", { class: "esteira-progress-label" }, "Analisando...");
      this.bar = element("div", { class: "esteira-progress-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": "Progresso da análise" });
      this.fill = element("div", { class: "esteira-progress-fill" });
      this.bar.appendChild(this.fill);
      this.box.appendChild(this.label);
      this.box.appendChild(this.bar);
      document.body.appendChild(this.box);
    }
    update(done, total) {
      const percent = total ? Math.round((100 * done) / total) : 100;
      this.bar.setAttribute("aria-valuenow", String(percent));
      this.fill.style.width = percent + "%";
      this.label.textContent = done + " / " + total + " pedidos (" + percent + "%)";
    }
  }

  class WorkersBadge {
    constructor() {
      this.node = element("div", { class: "esteira-workers", role: "status" }, "Workers Ativos (…)");
      document.body.appendChild(this.node);
    }
    update(count) {
      this.node.textContent = "Workers Ativos (" + count + ")";
      this.node.dataset.count = String(count);
      this.node.classList.toggle("esteira-workers-none", count === 0);
    }
  }

  function markBadge(node, result) {
    const badge = node.querySelector("[data-ruptura-badge]") || node;
    if (result.status === "analisado") {
      badge.textContent = result.criticidade + " · " + Math.round(result.percentual_disponibilidade) + "%";
      badge.dataset.status = result.criticidade;
      badge.title = result.sem_previsao ? "sem previsão" : ("disponível em " + (result.data_disponibilidade_total || "?"));
    } else {
      badge.textContent = "não encontrado";
      badge.dataset.status = "nao_encontrado";
    }
  }

  class RupturaWorkerAddon {
    constructor(options) {
      this.options = options || {};
      this.progress = new ProgressBar();
      this.badge = new WorkersBadge();
      this.fallbacks = 0;
    }

    static enabled() {
      const meta = document.querySelector('meta[name="ruptura-workers"]');
      return Boolean(global.RUPTURA_USE_WORKERS) || Boolean(meta && meta.getAttribute("content") === "true");
    }

    async analyse(root) {
      const nodes = Array.from((root || document).querySelectorAll("[data-ruptura-pedido]"));
      const byNumber = new Map();
      nodes.forEach(function (node) {
        const number = node.getAttribute("data-ruptura-pedido");
        if (!byNumber.has(number)) { byNumber.set(number, []); }
        byNumber.get(number).push(node);
      });
      const client = new RupturaClient(Object.assign({}, this.options, {
        onResult: (result) => { (byNumber.get(result.num_pedido) || []).forEach(function (n) { markBadge(n, result); }); },
        onProgress: (done, total) => { this.progress.update(done, total); },
        onWorkers: (count) => { this.badge.update(count); },
        onFallback: () => { this.fallbacks += 1; document.body.dataset.rupturaFallback = "true"; },
      }));
      const workers = await client.workers();
      if (workers !== null) { this.badge.update(workers); }
      return client.run(Array.from(byNumber.keys()));
    }
  }

  class OsLookup {
    constructor(options) {
      const o = options || {};
      this.base = baseUrl(o.baseUrl);
      this.pollMs = o.pollMs || 1000;
      this.cancelled = false;
    }

    cancel() { this.cancelled = true; }

    async lookup(numero, onProgress) {
      const report = onProgress || function () {};
      const answer = await request(this.base + "/api/v1/scraping/os/" + encodeURIComponent(numero), { method: "POST" });
      if (answer.status === 200) { report({ status: "success", progress: 100, stage: "done" }); return answer.body.data; }
      if (answer.status !== 202) {
        throw new Error((answer.body && answer.body.error && answer.body.error.message) || ("erro " + answer.status));
      }
      const taskId = answer.body.task_id;
      let since = null;
      while (!this.cancelled) {
        const seen = since === null ? "" : "&since=" + since;
        const task = await request(this.base + "/api/v1/scraping/tasks/" + taskId + "?wait=" + LONG_POLL_SECONDS + seen);
        let changed = false;
        if (task.ok) {
          changed = since === null || task.body.updated_at > since;
          since = task.body.updated_at;
          report(task.body);
          if (task.body.status === "success") { return task.body.result.data; }
          if (task.body.status === "failed") { throw new Error(task.body.error.message); }
        }
        if (!changed) { await sleep(this.pollMs); }
      }
      throw new Error("cancelada");
    }
  }

  const STAGES = {
    queued: "Na fila", deferred: "Aguardando o limite de acessos", starting: "Preparando o navegador",
    opening: "Abrindo o portal", login: "Entrando no portal", searching: "Buscando a OS",
    extracting: "Lendo os dados", saving: "Gravando", waiting_retry: "Nova tentativa em instantes",
    rate_limited: "Aguardando o limite de acessos", done: "Concluído", failed: "Falhou",
  };

  function showOsModal(numero, options) {
    const lookup = new OsLookup(options);
    const overlay = element("div", { class: "esteira-modal-overlay" });
    const dialog = element("div", { class: "esteira-modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "esteira-modal-title" });
    const title = element("h2", { id: "esteira-modal-title" }, "OS " + numero);
    const stage = element("p", { class: "esteira-modal-stage", "aria-live": "polite" }, "Enviando...");
    const bar = element("div", { class: "esteira-progress-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": "Progresso da busca" });
    const fill = element("div", { class: "esteira-progress-fill" });
    const result = element("div", { class: "esteira-modal-result" });
    const close = element("button", { type: "button", class: "esteira-modal-close" }, "Cancelar");
    bar.appendChild(fill);
    [title, stage, bar, result, close].forEach(function (n) { dialog.appendChild(n); });
    overlay.appendChild(dialog);
    document.body.appendChild(overlay);
    close.focus();
    const finish = function () { lookup.cancel(); overlay.remove(); };
    close.addEventListener("click", finish);
    overlay.addEventListener("keydown", function (event) { if (event.key === "Escape") { finish(); } });
    const progress = function (task) {
      const percent = task.progress || 0;
      bar.setAttribute("aria-valuenow", String(percent));
      fill.style.width = percent + "%";
      stage.textContent = (STAGES[task.stage] || task.stage || "") + " (" + percent + "%)";
      dialog.dataset.status = task.status;
    };
    const done = lookup.lookup(numero, progress).then(function (data) {
      progress({ status: "success", stage: "done", progress: 100 });
      result.textContent = "";
      [["Cliente", data.cliente], ["Equipamento", data.equipamento], ["Status", data.status_os]].forEach(function (pair) {
        if (pair[1]) { result.appendChild(element("p", {}, pair[0] + ": " + pair[1])); }
      });
      close.textContent = "Fechar";
      return data;
    }, function (error) {
      dialog.dataset.status = "failed";
      stage.textContent = "Erro: " + error.message;
      close.textContent = "Fechar";
      return null;
    });
    return { lookup: lookup, done: done, close: finish };
  }

  const Esteira = {
    RupturaClient: RupturaClient, RupturaWorkerAddon: RupturaWorkerAddon, OsLookup: OsLookup,
    showOsModal: showOsModal, setApiKey: setApiKey, request: request,
  };
  global.Esteira = Esteira;
  global.RupturaWorkerAddon = RupturaWorkerAddon;

  function autostart() {
    if (RupturaWorkerAddon.enabled() && !global.rupturaWorkerAddon) {
      global.rupturaWorkerAddon = new RupturaWorkerAddon({ baseUrl: global.ESTEIRA_BASE_URL });
      global.rupturaWorkerAddon.analyse();
    }
  }
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", autostart); } else { autostart(); }
  }
})(typeof window !== "undefined" ? window : globalThis);
