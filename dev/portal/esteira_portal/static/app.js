// The portal's single-page search: the server sends no data in HTML, only through /api/os.
(function () {
  "use strict";
  var root = document.getElementById("root");
  root.innerHTML =
    '<form id="busca" class="busca" role="search">' +
    '<label for="numero_os">Número da OS</label>' +
    '<input id="numero_os" name="numero_os" inputmode="numeric" autocomplete="off">' +
    '<button id="buscar" type="submit">Buscar</button></form>' +
    '<div id="resultado"></div>';
  var result = document.getElementById("resultado");

  function show(html) { result.innerHTML = html; }
  function text(value) {
    var span = document.createElement("span");
    span.textContent = value;
    return span.innerHTML;
  }

  document.getElementById("busca").addEventListener("submit", function (event) {
    event.preventDefault();
    var numero = document.getElementById("numero_os").value.trim();
    show('<p class="carregando">Buscando...</p>');
    fetch("/api/os/" + encodeURIComponent(numero), { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { window.location.href = "/login?expired=1"; return null; }
        return response.json().then(function (body) { return { status: response.status, body: body }; });
      })
      .then(function (answer) {
        if (!answer) { return; }
        if (answer.status === 404) {
          show('<p class="nao-encontrada">' + text(answer.body.erro) + "</p>");
        } else if (answer.status !== 200) {
          show('<p class="erro">' + text(answer.body.erro || "Erro") + "</p>");
        } else {
          var html = answer.body.campos.map(function (pair) {
            return "<p><strong>" + text(pair[0]) + ":</strong> " + text(pair[1]) + "</p>";
          }).join("");
          show('<div id="detalhes" class="card">' + html + "</div>");
        }
      })
      .catch(function () { show('<p class="erro">Falha de comunicação</p>'); });
  });
})();
