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
 *  Long polls (`wait`): the gateway holds the answer until something changed. An answer with
 *  nothing new after the whole wait means nothing changed: the clients ask again at once, so a
 *  poll is always held for the next change. One with nothing new before that (the gateway could
 *  not hold it) makes them wait pollMs before asking again.
 *  - Esteira.request(url, options): fetch with the key, answering { status, ok, body, code }
 *    (status 0: the gateway could not be reached, or refused this origin). A path is taken
 *    relative to the base URL.
 *  Base URL: the `baseUrl` option, else window.ESTEIRA_BASE_URL, else Esteira.setBaseUrl(url),
 *  else where esteira.js itself was loaded from (so a page on another origin that loads it from
 *  the gateway talks to that gateway), else the page's own origin.
 *  Failures are Esteira.EsteiraError (status, code, a message in Portuguese for the page):
 *  a missing or refused key is never shown as an order "não encontrado".
 */
(function (global) {
  "use strict";

  // Where this script came from: /static/esteira.js under the gateway's base URL.
  const scriptBase = (function () {
    const script = typeof document !== "undefined" ? document.currentScript : null;
    if (!script || !script.src) { return ""; }
    return script.src.replace(/\/static\/esteira\.m?js(\?.*)?$/, "");
  })();
  let configuredBase = null;

  function setBaseUrl(url) { configuredBase = url || null; }

  function baseUrl(value) {
    return (value || global.ESTEIRA_BASE_URL || configuredBase || scriptBase || "").replace(/\/$/, "");
  }

  let apiKey = null;
  const LONG_POLL_SECONDS = 20;
  if (typeof document !== "undefined") {
    const meta = document.querySelector('meta[name="esteira-api-key"]');
    if (meta && meta.content) { apiKey = meta.content; }
  }

  function setApiKey(key) { apiKey = key || null; }

  // A gateway too busy to read Redis's answer in time says so (503 gateway_busy, Retry-After):
  // the same request is sent again after that wait, this many times at most, rather than
  // taken for an outage (which would send the page to the per-order endpoint, more work for
  // the same busy gateway).
  const BUSY_RETRIES = 3;

  async function request(url, options) {
    const target = /^\/(?!\/)/.test(url) ? baseUrl() + url : url;
    const headers = { "Content-Type": "application/json" };
    if (apiKey) { headers.Authorization = "Bearer " + apiKey; }
    for (let attempt = 0; ; attempt += 1) {
      let response;
      try {
        response = await fetch(target, Object.assign({ headers: headers }, options));
      } catch (ignored) {
        return { status: 0, ok: false, body: null, code: "unreachable" };
      }
      let body = null;
      try { body = await response.json(); } catch (ignored) { body = null; }
      const code = body && body.error && body.error.code ? body.error.code : null;
      if (code !== "gateway_busy" || attempt >= BUSY_RETRIES) {
        return { status: response.status, ok: response.ok, body: body, code: code };
      }
      await sleep(1000 * Math.min(Number(response.headers.get("Retry-After")) || 1, 10));
    }
  }

  const MESSAGES = {
    unreachable: "Sem conexão com o gateway (fora do ar, ou esta página não está entre as origens permitidas).",
    unauthenticated: "Sem chave de API: o gateway pede uma chave (Authorization: Bearer).",
    invalid_api_key: "Chave de API inválida: o gateway recusou a chave informada.",
    redis_unavailable: "Redis indisponível: o gateway não consegue acompanhar a tarefa agora.",
    gateway_busy: "Gateway sobrecarregado: tente de novo em instantes.",
    rate_limited: "Muitas requisições: aguarde alguns segundos.",
    portal_error: "O portal respondeu com erro.",
    not_found: "OS não encontrada no portal.",
    login_failed: "O portal recusou o login configurado.",
    soft_time_limit: "A busca passou do tempo limite.",
    hard_time_limit: "A busca passou do tempo limite.",
    browser_failure: "O navegador da busca falhou.",
  };

  class EsteiraError extends Error {
    constructor(message, status, code) {
      super(message);
      this.name = "EsteiraError";
      this.status = status;
      this.code = code || null;
    }
    get auth() { return this.status === 401 || this.status === 403; }
  }

  function errorFrom(answer) {
    const code = answer.status === 0 ? "unreachable" : answer.code;
    const detail = answer.body && answer.body.error && answer.body.error.message;
    return new EsteiraError(MESSAGES[code] || detail || ("Erro " + answer.status + "."), answer.status, code);
  }

  // Whether the synchronous per-order path may help: not when the gateway cannot be reached or
  // refuses the key, where it would fail the same way for every order.
  function canFallBack(error) {
    return !(error instanceof EsteiraError) || !(error.auth || error.status === 0);
  }

  /** What a queue's state means for work sent now, in words for the page. */
  function describeQueue(queue) {
    if (!queue) { return ""; }
    if (queue.redis === "down" || queue.reason === "redis_down") {
      return "Redis fora do ar: o gateway processa aqui mesmo (inline), sem fila.";
    }
    if (queue.mode === "inline") {
      return "Nenhum worker online: o gateway processa aqui mesmo (inline) até um worker voltar.";
    }
    if (queue.workers_online === 0) {
      return "Nenhum worker online: aguardando um worker subir (escalando); se nenhum subir a tempo, o gateway processa aqui.";
    }
    return queue.workers_online + (queue.workers_online === 1 ? " worker online." : " workers online.");
  }

  async function queueState(base, pool) {
    const answer = await request(base + "/api/v1/queues");
    if (!answer.ok) { return null; }
    return answer.body.queues.find(function (q) { return q.pool === pool; }) || null;
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  /** Whether a long poll sent at `sentMs` (Date.now()) ran out its `waitSeconds`. */
  function ranOut(sentMs, waitSeconds) {
    return Date.now() - sentMs >= waitSeconds * 1000 - 500;
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
      this.onQueue = o.onQueue || function () {};
      this.onError = o.onError || function () {};
      this.mode = o.mode || "independent";
      this.error = null;
      this.stopped = false;
    }

    stop() { this.stopped = true; }

    async workers() {
      const ruptura = await this.queue();
      return ruptura ? ruptura.workers_online : null;
    }

    /** The ruptura queue as /api/v1/queues reports it (mode, reason, workers_online), or null. */
    async queue() {
      const ruptura = await queueState(this.base, "ruptura");
      if (ruptura) { this.onQueue(ruptura); }
      return ruptura;
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
        try {
          await this.viaQueue(wanted, deliver);
        } catch (error) {
          if (this.stopped || !canFallBack(error)) { throw error; }
          this.onFallback(error);
          await this.perOrder(wanted.filter(function (n) { return !delivered.has(n); }), deliver);
        }
      } catch (error) {
        if (!this.stopped) { this.error = error; this.onError(error); }
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
      if (started.status !== 202) { throw errorFrom(started); }
      const sessionId = started.body.session_id;
      let offset = 0;
      let failures = 0;
      const longPoll = this.useEvents ? "" : "&wait=" + LONG_POLL_SECONDS;
      while (!this.stopped) {
        let page;
        let fresh = false;
        const sent = Date.now();
        try {
          page = await request(this.base + "/api/v1/ruptura/sessions/" + sessionId + "/results?offset=" + offset + longPoll);
        } catch (error) { page = { ok: false, status: 0 }; }
        if (!page.ok) {
          failures += 1;
          if (page.status === 401 || page.status === 403 || failures >= 2) { throw errorFrom(page); }
        } else {
          failures = 0;
          fresh = page.body.results.length > 0;
          page.body.results.forEach(deliver);
          offset = page.body.next_offset;
          if (page.body.done) { return; }
        }
        if (!fresh) {  // nothing new: say why (workers online, the queue's mode)
          const queue = await this.queue();
          if (queue && queue.workers_online !== null) { this.onWorkers(queue.workers_online); }
        }
        if (this.useEvents || !(fresh || (page.ok && ranOut(sent, LONG_POLL_SECONDS)))) {
          await this.wait(sessionId);
        }
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
          } else if (answer.status === 404) {
            deliver({ num_pedido: number, status: "nao_encontrado" });
          } else if (!canFallBack(errorFrom(answer))) {
            queue.length = 0;
            throw errorFrom(answer);
          } else {
            deliver({ num_pedido: number, status: "erro", erro: errorFrom(answer).message });
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
      this.note = element("p", { class: "esteira-progress-note" });
      this.bar.appendChild(this.fill);
      this.box.appendChild(this.label);
      this.box.appendChild(this.bar);
      this.box.appendChild(this.note);
      document.body.appendChild(this.box);
    }
    update(done, total) {
      const percent = total ? Math.round((100 * done) / total) : 100;
      this.bar.setAttribute("aria-valuenow", String(percent));
      this.fill.style.width = percent + "%";
      this.label.textContent = done + " / " + total + " pedidos (" + percent + "%)";
    }
    explain(text) { this.note.textContent = text || ""; }
    fail(error) {
      this.box.dataset.state = "error";
      this.box.setAttribute("role", "alert");
      this.note.textContent = error.message;
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
    badge.removeAttribute("title");
    if (result.status === "analisado") {
      badge.textContent = result.criticidade + " · " + Math.round(result.percentual_disponibilidade) + "%";
      badge.dataset.status = result.criticidade;
      badge.title = result.sem_previsao ? "sem previsão" : ("disponível em " + (result.data_disponibilidade_total || "?"));
    } else if (result.status === "nao_encontrado") {
      badge.textContent = "não encontrado";
      badge.dataset.status = "nao_encontrado";
    } else {
      badge.textContent = result.status === "sem_acesso" ? "sem acesso" : "erro";
      badge.dataset.status = result.status === "sem_acesso" ? "sem_acesso" : "erro";
      if (result.erro) { badge.title = result.erro; }
    }
  }

  class RupturaWorkerAddon {
    constructor(options) {
      this.options = options || {};
      this.progress = new ProgressBar();
      this.badge = new WorkersBadge();
      this.fallbacks = 0;
      this.error = null;
      this.onResult = this.options.onResult || function () {};
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
      const delivered = new Set();
      this.error = null;
      delete this.progress.box.dataset.state;
      this.progress.box.setAttribute("role", "status");
      this.progress.explain("");
      const client = new RupturaClient(Object.assign({}, this.options, {
        onResult: (result) => {
          delivered.add(result.num_pedido);
          (byNumber.get(result.num_pedido) || []).forEach(function (n) { markBadge(n, result); });
          this.onResult(result);
        },
        onProgress: (done, total) => { this.progress.update(done, total); },
        onWorkers: (count) => { this.badge.update(count); },
        onQueue: (queue) => {
          if (!this.error && !this.fallbacks) { this.progress.explain(queue.workers_online > 0 ? "" : describeQueue(queue)); }
        },
        onFallback: (error) => {
          this.fallbacks += 1;
          document.body.dataset.rupturaFallback = "true";
          this.progress.explain("Fila indisponível (" + error.message + "): analisando pelo endpoint síncrono.");
        },
        onError: (error) => {
          this.error = error;
          this.progress.fail(error);
          const status = error.auth ? "sem_acesso" : "erro";
          byNumber.forEach(function (list, number) {
            if (delivered.has(number)) { return; }
            list.forEach(function (n) { markBadge(n, { num_pedido: number, status: status, erro: error.message }); });
          });
        },
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

    /**
     * Looks numero up; onProgress(task, note) is called with each state of the task and a
     * sentence saying what it waits for (no worker, Redis down, a retry), if anything. Resolves
     * with the OS data; rejects with an EsteiraError.
     */
    async lookup(numero, onProgress) {
      const report = onProgress || function () {};
      const answer = await request(this.base + "/api/v1/scraping/os/" + encodeURIComponent(numero), { method: "POST" });
      if (answer.status === 200) { report({ status: "success", progress: 100, stage: "done" }, ""); return answer.body.data; }
      if (answer.status !== 202) { throw errorFrom(answer); }
      const taskId = answer.body.task_id;
      let since = null;
      let last = { status: "queued", stage: "queued", progress: 0 };
      while (!this.cancelled) {
        const seen = since === null ? "" : "&since=" + since;
        // While the task waits in the queue, ask for less than a long poll: the page must
        // say why it waits (no worker, scaling up) while it waits.
        const wait = last.status === "queued" ? 3 : LONG_POLL_SECONDS;
        const sent = Date.now();
        const task = await request(this.base + "/api/v1/scraping/tasks/" + taskId + "?wait=" + wait + seen);
        let changed = false;
        if (task.ok) {
          changed = since === null || task.body.updated_at > since;
          since = task.body.updated_at;
          last = task.body;
          report(task.body, await this.note(task.body));
          if (task.body.status === "success") { return task.body.result.data; }
          if (task.body.status === "failed") { throw taskError(task.body.error); }
        } else {
          const error = errorFrom(task);
          if (error.auth || task.status === 404) { throw error; }
          report(last, error.message + " Tentando de novo…");
        }
        if (!changed && !(task.ok && ranOut(sent, wait))) { await sleep(this.pollMs); }
      }
      throw new EsteiraError("Busca cancelada.", 0, "cancelled");
    }

    async note(task) {
      if (task.status === "queued") {
        const queue = await queueState(this.base, "scraper");
        if (queue && queue.mode === "inline" && queue.reason !== "redis_down") {
          // The gateway serves new lookups itself now; one queued before waits to be taken up.
          return "Nenhum worker online: o gateway passou a fazer as buscas novas aqui (inline); esta, enfileirada antes, aguarda ser retomada.";
        }
        return describeQueue(queue);
      }
      if (task.status === "retrying" || task.stage === "waiting_retry") {
        const why = task.error ? taskError(task.error).message + " " : "";
        return why + "Nova tentativa (" + task.attempts + ")" + (task.eta ? " em " + Math.max(0, Math.round(task.eta - Date.now() / 1000)) + " s." : ".");
      }
      if (task.status === "deferred") { return "Aguardando o limite de acessos ao portal."; }
      return "";
    }
  }

  function taskError(error) {
    const code = error && error.code;
    const detail = error && error.message ? " (" + error.message + ")" : "";
    return new EsteiraError((MESSAGES[code] || "A busca falhou.") + detail, 0, code);
  }

  const STAGES = {
    queued: "Na fila", deferred: "Aguardando o limite de acessos", starting: "Preparando o navegador",
    opening: "Abrindo o portal", login: "Entrando no portal", searching: "Buscando a OS",
    extracting: "Lendo os dados", saving: "Gravando", waiting_retry: "Nova tentativa em instantes",
    rate_limited: "Aguardando o limite de acessos", done: "Concluído", failed: "Falhou",
  };

  const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select, textarea, [tabindex]:not([tabindex='-1'])";

  function showOsModal(numero, options) {
    const lookup = new OsLookup(options);
    const opener = document.activeElement;
    const overlay = element("div", { class: "esteira-modal-overlay" });
    const dialog = element("div", { class: "esteira-modal", role: "dialog", "aria-modal": "true", "aria-labelledby": "esteira-modal-title", "aria-describedby": "esteira-modal-stage", tabindex: "-1" });
    const title = element("h2", { id: "esteira-modal-title" }, "OS " + numero);
    const stage = element("p", { class: "esteira-modal-stage", id: "esteira-modal-stage", "aria-live": "polite" }, "Enviando...");
    const note = element("p", { class: "esteira-modal-note", "aria-live": "polite" });
    const bar = element("div", { class: "esteira-progress-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0", "aria-label": "Progresso da busca" });
    const fill = element("div", { class: "esteira-progress-fill" });
    const result = element("div", { class: "esteira-modal-result" });
    const close = element("button", { type: "button", class: "esteira-modal-close" }, "Cancelar");
    bar.appendChild(fill);
    [title, stage, note, bar, result, close].forEach(function (n) { dialog.appendChild(n); });
    overlay.appendChild(dialog);
    document.body.appendChild(overlay);
    close.focus();
    // Focus stays in the dialog while it is open (Tab and Shift+Tab cycle inside it), and goes
    // back to what opened it when it closes.
    const focusables = function () { return Array.from(dialog.querySelectorAll(FOCUSABLE)); };
    const keepFocus = function (event) {
      if (!dialog.contains(event.target)) { (focusables()[0] || dialog).focus(); }
    };
    document.addEventListener("focusin", keepFocus);
    const finish = function () {
      lookup.cancel();
      document.removeEventListener("focusin", keepFocus);
      overlay.remove();
      if (opener && typeof opener.focus === "function" && document.contains(opener)) { opener.focus(); }
    };
    close.addEventListener("click", finish);
    overlay.addEventListener("keydown", function (event) {
      if (event.key === "Escape") { finish(); return; }
      if (event.key !== "Tab") { return; }
      const items = focusables();
      if (!items.length) { event.preventDefault(); dialog.focus(); return; }
      const first = items[0];
      const last = items[items.length - 1];
      if (event.shiftKey && (document.activeElement === first || document.activeElement === dialog)) {
        event.preventDefault(); last.focus();
      } else if (!event.shiftKey && document.activeElement === last) {
        event.preventDefault(); first.focus();
      }
    });
    const progress = function (task, why) {
      const percent = task.progress || 0;
      bar.setAttribute("aria-valuenow", String(percent));
      fill.style.width = percent + "%";
      stage.textContent = (STAGES[task.stage] || task.stage || "") + " (" + percent + "%)";
      note.textContent = why || "";
      dialog.dataset.status = task.status;
    };
    const done = lookup.lookup(numero, progress).then(function (data) {
      progress({ status: "success", stage: "done", progress: 100 }, "");
      result.textContent = "";
      [["Cliente", data.cliente], ["Equipamento", data.equipamento], ["Status", data.status_os]].forEach(function (pair) {
        if (pair[1]) { result.appendChild(element("p", {}, pair[0] + ": " + pair[1])); }
      });
      close.textContent = "Fechar";
      return data;
    }, function (error) {
      dialog.dataset.status = "failed";
      dialog.dataset.error = error.code || "error";
      stage.textContent = "Erro";
      note.textContent = error.message;
      note.setAttribute("role", "alert");
      close.textContent = "Fechar";
      return null;
    });
    return { lookup: lookup, done: done, close: finish, dialog: dialog };
  }

  const Esteira = {
    RupturaClient: RupturaClient, RupturaWorkerAddon: RupturaWorkerAddon, OsLookup: OsLookup,
    showOsModal: showOsModal, setApiKey: setApiKey, setBaseUrl: setBaseUrl, request: request,
    EsteiraError: EsteiraError, describeQueue: describeQueue,
  };
  global.Esteira = Esteira;
  global.RupturaWorkerAddon = RupturaWorkerAddon;

  function autostart() {
    if (RupturaWorkerAddon.enabled() && !global.rupturaWorkerAddon) {
      global.rupturaWorkerAddon = new RupturaWorkerAddon({});
      global.rupturaWorkerAddon.analyse();
    }
  }
  if (typeof document !== "undefined") {
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", autostart); } else { autostart(); }
  }
})(typeof window !== "undefined" ? window : globalThis);
