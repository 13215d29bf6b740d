// The neuron browser's behaviour: sortable tables and the index's filters. No network, no library.
(function () {
  "use strict";

  // A cell's sort key: its data-v attribute where it has one (numbers), else its text.
  function sortKey(row, column, numeric) {
    var cell = row.cells[column];
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent;
    if (numeric) {
      var value = parseFloat(raw);
      return isNaN(value) ? null : value;
    }
    return raw.trim().toLowerCase();
  }

  function sortRows(table, column, numeric, descending) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, index) { row._order = index; });
    rows.sort(function (a, b) {
      var x = sortKey(a, column, numeric);
      var y = sortKey(b, column, numeric);
      if (x === y) return a._order - b._order;  // stable: ties keep their order
      if (x === null) return 1;  // missing values last, either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * (descending ? -1 : 1);
    });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
  }

  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (header, column) {
      header.tabIndex = 0;
      function sortByThis() {
        var descending = header.getAttribute("aria-sort") === "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        header.setAttribute("aria-sort", descending ? "descending" : "ascending");
        sortRows(table, column, header.getAttribute("data-kind") === "num", descending);
      }
      header.addEventListener("click", sortByThis);
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortByThis(); }
      });
    });
  }

  // Rows stay when their text contains the box's words and their data-* attributes match every list.
  function applyFilters(form, table, counter) {
    var words = form.elements.q.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    var lists = Array.prototype.slice.call(form.querySelectorAll("select"));
    var rows = table.tBodies[0].rows;
    var shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var text = row.textContent.toLowerCase();
      var visible = words.every(function (word) { return text.indexOf(word) >= 0; }) &&
        lists.every(function (list) { return !list.value || row.getAttribute("data-" + list.name) === list.value; });
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    counter.textContent = shown + " of " + rows.length + " rows shown";
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  var form = document.getElementById("filters");
  var table = document.getElementById("neuron-table");
  var counter = document.getElementById("row-count");
  if (form && table && counter) {
    var update = function () { applyFilters(form, table, counter); };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", function (event) { event.preventDefault(); });
    update();
  }
})();
