// The operator page: live queues, recent scrape tasks, a demo carteira analysed through the
// queue (badges change as results arrive), and an OS lookup with its progress modal.
(function () {
  "use strict";
  const Esteira = window.Esteira;

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

  // With authentication on, the page asks once for an API key and keeps it for this tab.
  const KEY_STORE = "esteira.apiKey";
  Esteira.setApiKey(sessionStorage.getItem(KEY_STORE));

  async function json(url) {
    const keyUsed = sessionStorage.getItem(KEY_STORE);
    let answer = await Esteira.request(url);
    if (answer.status === 401) {
      // Another refresh may have asked meanwhile: ask only if the key is still the one refused.
      const key = sessionStorage.getItem(KEY_STORE) !== keyUsed
        ? sessionStorage.getItem(KEY_STORE)
        : window.prompt("API key (Authorization: Bearer …)");
      if (key) {
        sessionStorage.setItem(KEY_STORE, key);
        Esteira.setApiKey(key);
        answer = await Esteira.request(url);
      }
    }
    if (!answer.ok) { throw new Error(url + ": " + answer.status); }
    return answer.body;
  }

  async function refreshQueues() {
    try {
      const body = await json("/api/v1/queues");
      fill(document.querySelector("#queues tbody"), body.queues.map(function (q) {
        return [cell(q.pool), cell(q.mode + (q.mode === "inline" ? " (" + q.reason + ")" : ""), "mode-" + q.mode),
          cell(q.ready), cell(q.deferred), cell(q.in_progress),
          cell(q.oldest_ready_age_seconds === null ? null : q.oldest_ready_age_seconds.toFixed(1) + " s"),
          cell(q.workers_online)];
      }));
    } catch (ignored) { /* shown as stale until the next refresh */ }
  }

  async function refreshTasks() {
    try {
      const tasks = await json("/api/v1/scraping/tasks?limit=10");
      fill(document.querySelector("#tasks tbody"), tasks.map(function (t) {
        return [cell(t.numero_os), cell(t.status), cell(t.stage), cell(t.progress), cell(t.attempts)];
      }));
    } catch (ignored) { /* the task store may be down: nothing to list */ }
  }

  async function loadOrders() {
    const orders = await json("/api/v1/ruptura/orders?limit=40");
    fill(document.querySelector("#pedidos tbody"), orders.map(function (order) {
      const badge = document.createElement("span");
      badge.setAttribute("data-ruptura-badge", "");
      badge.textContent = "pendente";
      const status = document.createElement("td");
      status.appendChild(badge);
      const number = cell(order.num_pedido);
      return [number, cell(order.cliente), status];
    }));
    document.querySelectorAll("#pedidos tbody tr").forEach(function (tr, index) {
      tr.setAttribute("data-ruptura-pedido", orders[index].num_pedido);
    });
  }

  let addon = null;
  document.getElementById("analisar").addEventListener("click", async function () {
    const status = document.getElementById("analysis-status");
    this.disabled = true;
    status.textContent = "Analisando…";
    addon = addon || new Esteira.RupturaWorkerAddon({});
    const count = await addon.analyse(document.getElementById("pedidos"));
    status.textContent = count + " pedidos analisados" + (addon.fallbacks ? " (sem fila: endpoint síncrono)" : "");
    this.disabled = false;
  });

  document.getElementById("os-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const numero = document.getElementById("os-numero").value.trim();
    const modal = Esteira.showOsModal(numero, {});
    modal.done.then(refreshTasks);
  });

  loadOrders();
  refreshQueues();
  refreshTasks();
  setInterval(refreshQueues, 2000);
  setInterval(refreshTasks, 2000);
})();
