// The operator page: live queues with what their state means, the last 15 minutes as small
// charts, recent scrape tasks, a demo carteira analysed through the queue (badges change as
// results arrive), and an OS lookup with its progress modal. Every failure is said on the page:
// no key, a refused key, the gateway unreachable, Redis down.
(function () {
  "use strict";
  const Esteira = window.Esteira;
  const Charts = window.EsteiraCharts;
  const REFRESH_MS = 2000;
  const WINDOW_MS = 15 * 60 * 1000;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    if (className) { td.className = className; }
    return td;
  }

  function fill(tbody, rows) {
    tbody.replaceChildren.apply(tbody, rows.map(function (cells) {
      const tr = document.createElement("tr");
      cells.forEach(function (td) { tr.appendChild(td); });
      return tr;
    }));
  }

  function emptyRow(tbody, columns, text) {
    const td = cell(text, "empty");
    td.colSpan = columns;
    fill(tbody, [[td]]);
  }

  // --- The API key -------------------------------------------------------------------------
  // With authentication on, the page asks for a key in a banner (not a blocking prompt) when
  // the gateway answers 401, and keeps it for this tab. "Agora não" hides the banner until the
  // key changes; a refused key is asked for again with its own words.
  const KEY_STORE = "esteira.apiKey";
  const auth = { key: sessionStorage.getItem(KEY_STORE), dismissedFor: undefined, state: "unknown" };
  Esteira.setApiKey(auth.key);
  const authForm = document.getElementById("auth-form");
  const authOpen = document.getElementById("auth-open");

  function askForKey(code) {
    auth.state = code;
    document.getElementById("auth-message").textContent = code === "invalid_api_key"
      ? "A chave de API informada não é válida (o gateway a recusou). Informe outra chave."
      : "Este gateway pede uma chave de API. Informe a chave para ver filas, carteira e buscas.";
    const dismissed = auth.dismissedFor === auth.key;
    authForm.hidden = dismissed;
    authOpen.hidden = !dismissed;
  }

  function keyAccepted() {
    if (auth.state === "ok") { return; }
    auth.state = "ok";
    authForm.hidden = true;
    authOpen.hidden = true;
  }

  authForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const input = document.getElementById("auth-key");
    auth.key = input.value.trim();
    input.value = "";
    sessionStorage.setItem(KEY_STORE, auth.key);
    Esteira.setApiKey(auth.key);
    authForm.hidden = true;
    refreshAll();
  });
  document.getElementById("auth-later").addEventListener("click", function () {
    auth.dismissedFor = auth.key;
    authForm.hidden = true;
    authOpen.hidden = false;
    authOpen.focus();
  });
  authOpen.addEventListener("click", function () {
    auth.dismissedFor = undefined;
    authForm.hidden = false;
    authOpen.hidden = true;
    document.getElementById("auth-key").focus();
  });

  async function json(url) {
    const answer = await Esteira.request(url);
    if (answer.status === 401) { askForKey(answer.code); }
    if (!answer.ok) {
      const error = new Esteira.EsteiraError(describe(answer), answer.status, answer.status ? answer.code : "unreachable");
      throw error;
    }
    keyAccepted();
    return answer.body;
  }

  function describe(answer) {
    if (answer.status === 401) {
      return answer.code === "invalid_api_key" ? "Sem acesso: chave de API inválida." : "Sem acesso: informe uma chave de API.";
    }
    if (answer.status === 0) { return "Gateway inacessível; tentando de novo a cada 2 s."; }
    if (answer.code === "redis_unavailable") { return "Redis indisponível: nada a listar até ele voltar."; }
    return (answer.body && answer.body.error && answer.body.error.message) || ("Erro " + answer.status + ".");
  }

  // --- Page-level notice: the gateway unreachable, Redis down --------------------------------
  function notice(text, level) {
    const box = document.getElementById("notice");
    box.hidden = !text;
    box.textContent = text || "";
    box.dataset.level = level || "warn";
  }

  // --- Queues ------------------------------------------------------------------------------
  const depth = [];  // { t, ruptura, scraper } samples, the last 15 minutes

  async function refreshQueues() {
    const tbody = document.querySelector("#queues tbody");
    const notes = document.getElementById("queue-notes");
    let body;
    try {
      body = await json("/api/v1/queues");
    } catch (error) {
      emptyRow(tbody, 7, error.message);
      notes.replaceChildren();
      if (error.code === "unreachable") { notice(error.message); }
      return;
    }
    fill(tbody, body.queues.map(function (q) {
      const waiting = q.mode === "queue" && q.workers_online === 0;
      const mode = q.mode === "inline"
        ? "inline (" + (q.reason === "redis_down" ? "sem Redis" : "sem workers") + ")"
        : (waiting ? "fila (aguardando workers)" : "fila");
      return [cell(q.pool), cell(mode, waiting ? "mode-inline" : "mode-" + q.mode),
        cell(q.ready), cell(q.deferred), cell(q.in_progress),
        cell(q.oldest_ready_age_seconds === null ? null : q.oldest_ready_age_seconds.toFixed(1) + " s"),
        cell(q.workers_online, q.workers_online === 0 ? "workers-none" : "")];
    }));
    notes.replaceChildren.apply(notes, body.queues.filter(function (q) {
      return q.mode === "inline" || q.workers_online === 0;
    }).map(function (q) {
      const item = document.createElement("li");
      item.dataset.pool = q.pool;
      item.dataset.level = "warn";
      item.textContent = q.pool + ": " + Esteira.describeQueue(q);
      return item;
    }));
    const redisDown = body.queues.some(function (q) { return q.redis === "down"; });
    notice(redisDown ? "Redis fora do ar: o gateway faz o trabalho ele mesmo (inline) e não consegue acompanhar tarefas já enfileiradas até o Redis voltar." : "");
    const sample = { t: Date.now() };
    body.queues.forEach(function (q) {
      sample[q.pool] = q.redis === "down" ? null : (q.ready || 0) + (q.deferred || 0) + (q.in_progress || 0);
    });
    depth.push(sample);
    while (depth.length && depth[0].t < Date.now() - WINDOW_MS) { depth.shift(); }
    drawDepth();
  }

  // --- Recent scrape tasks -----------------------------------------------------------------
  const ended = new Map();  // task_id -> { t, outcome }: the tasks seen ending, for the charts

  function outcome(task) {
    if (task.status === "success") { return "success"; }
    const code = task.error && task.error.code;
    return code === "not_found" || code === "portal_error" ? code : "failed";
  }

  async function refreshTasks() {
    const tbody = document.querySelector("#tasks tbody");
    let tasks;
    try {
      tasks = await json("/api/v1/scraping/tasks?limit=100");
    } catch (error) {
      emptyRow(tbody, 5, error.message);
      return;
    }
    tasks.forEach(function (t) {
      if ((t.status === "success" || t.status === "failed") && !ended.has(t.task_id)) {
        ended.set(t.task_id, { t: t.updated_at * 1000, outcome: outcome(t) });
      }
    });
    if (!tasks.length) { emptyRow(tbody, 5, "Nenhuma busca ainda."); } else {
      fill(tbody, tasks.slice(0, 10).map(function (t) {
        const status = t.status === "failed" && t.error ? "failed (" + t.error.code + ")" : t.status;
        return [cell(t.numero_os), cell(status), cell(t.stage), cell(t.progress), cell(t.attempts)];
      }));
    }
    drawTaskCharts();
  }

  // --- Charts ------------------------------------------------------------------------------
  const analysed = [];  // times of the ruptura results this page received

  function minuteBuckets(events, series) {
    const now = Date.now();
    const buckets = [];
    for (let i = 14; i >= 0; i -= 1) { buckets.push({ from: now - (i + 1) * 60000, to: now - i * 60000, counts: {} }); }
    events.forEach(function (event) {
      const bucket = buckets.find(function (b) { return event.t > b.from && event.t <= b.to; });
      if (bucket && series.indexOf(event.name) >= 0) { bucket.counts[event.name] = (bucket.counts[event.name] || 0) + 1; }
    });
    return buckets;
  }

  function drawDepth() {
    const now = Date.now();
    Charts.lines(document.getElementById("chart-depth"), document.getElementById("legend-depth"), [
      { name: "ruptura", label: "ruptura", color: "#1d4ed8", points: depth.filter(function (s) { return s.ruptura !== null; }).map(function (s) { return [s.t, s.ruptura]; }) },
      { name: "scraper", label: "scraping", color: "#b45309", points: depth.filter(function (s) { return s.scraper !== null; }).map(function (s) { return [s.t, s.scraper]; }) },
    ], now - WINDOW_MS, now);
  }

  function drawTaskCharts() {
    while (analysed.length && analysed[0] < Date.now() - WINDOW_MS) { analysed.shift(); }
    const scrapes = Array.from(ended.values());
    const throughput = scrapes.map(function (e) { return { t: e.t, name: "scrapes" }; })
      .concat(analysed.map(function (t) { return { t: t, name: "orders" }; }));
    Charts.bars(document.getElementById("chart-throughput"), document.getElementById("legend-throughput"),
      minuteBuckets(throughput, ["orders", "scrapes"]), [
        { name: "orders", label: "pedidos analisados (esta página)", color: "#1d4ed8" },
        { name: "scrapes", label: "buscas concluídas", color: "#7c3aed" },
      ]);
    const outcomes = ["success", "not_found", "portal_error", "failed"];
    Charts.bars(document.getElementById("chart-outcomes"), document.getElementById("legend-outcomes"),
      minuteBuckets(scrapes.map(function (e) { return { t: e.t, name: e.outcome }; }), outcomes), [
        { name: "success", label: "sucesso", color: "#15803d" },
        { name: "not_found", label: "OS não encontrada", color: "#475569" },
        { name: "portal_error", label: "erro do portal", color: "#b91c1c" },
        { name: "failed", label: "outras falhas", color: "#9a3412" },
      ]);
  }

  const LEVELS = [
    { name: "CRITICA", label: "CRITICA", color: "#b91c1c" },
    { name: "ALTA", label: "ALTA", color: "#c2410c" },
    { name: "MEDIA", label: "MEDIA", color: "#a16207" },
    { name: "BAIXA", label: "BAIXA", color: "#15803d" },
  ];

  function drawCriticidade() {
    const badges = Array.from(document.querySelectorAll("#pedidos [data-ruptura-badge]"));
    Charts.horizontal(document.getElementById("chart-criticidade"), LEVELS.map(function (level) {
      const value = badges.filter(function (b) { return b.dataset.status === level.name; }).length;
      return Object.assign({ value: value }, level);
    }));
  }

  // --- The demo carteira -------------------------------------------------------------------
  let ordersLoaded = false;

  async function loadOrders() {
    const tbody = document.querySelector("#pedidos tbody");
    let orders;
    try {
      orders = await json("/api/v1/ruptura/orders?limit=40");
    } catch (error) {
      emptyRow(tbody, 3, error.message);
      return;
    }
    ordersLoaded = true;
    fill(tbody, orders.map(function (order) {
      const badge = document.createElement("span");
      badge.setAttribute("data-ruptura-badge", "");
      badge.textContent = "pendente";
      const status = document.createElement("td");
      status.appendChild(badge);
      return [cell(order.num_pedido), cell(order.cliente), status];
    }));
    document.querySelectorAll("#pedidos tbody tr").forEach(function (tr, index) {
      tr.setAttribute("data-ruptura-pedido", orders[index].num_pedido);
    });
    document.getElementById("analisar").disabled = false;
    drawCriticidade();
  }

  new MutationObserver(drawCriticidade).observe(document.querySelector("#pedidos tbody"), {
    subtree: true, attributes: true, attributeFilter: ["data-status"],
  });

  let addon = null;
  document.getElementById("analisar").addEventListener("click", async function () {
    const status = document.getElementById("analysis-status");
    this.disabled = true;
    status.textContent = "Analisando…";
    addon = addon || new Esteira.RupturaWorkerAddon({ onResult: function () { analysed.push(Date.now()); } });
    const count = await addon.analyse(document.getElementById("pedidos"));
    if (addon.error) {
      status.textContent = "Análise interrompida: " + addon.error.message;
    } else {
      status.textContent = count + " pedidos analisados" + (addon.fallbacks ? " (sem fila: endpoint síncrono)" : "");
    }
    drawTaskCharts();
    this.disabled = false;
  });

  document.getElementById("os-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const numero = document.getElementById("os-numero").value.trim();
    const modal = Esteira.showOsModal(numero, {});
    modal.done.then(refreshTasks);
  });

  function refreshAll() {
    if (!ordersLoaded) { loadOrders(); }
    refreshQueues();
    refreshTasks();
  }

  drawDepth();
  drawTaskCharts();
  drawCriticidade();
  refreshAll();
  setInterval(function () {
    if (!ordersLoaded) { loadOrders(); }
    refreshQueues();
    refreshTasks();
  }, REFRESH_MS);
})();
