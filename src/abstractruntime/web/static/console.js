// The console's live parts. Everything from a run is put in the page with textContent, never
// as HTML. Without JavaScript the pages read the same, only without live updates.
(function () {
  "use strict";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function recordItem(index, record) {
    var li = el("li", "record " + (record.status || ""));
    li.appendChild(el("span", "seq", "#" + index));
    li.appendChild(el("span", "node", record.node_id));
    li.appendChild(el("span", "status " + (record.status || ""), record.status));
    if (record.effect && record.effect.type) li.appendChild(el("span", "effect", record.effect.type));
    var when = record.ended_at || record.started_at || "";
    li.appendChild(el("time", null, when.slice(0, 19).replace("T", " ")));
    var hash = el("span", "hash mono", (record.record_hash || "").slice(0, 12));
    hash.title = record.record_hash || "";
    li.appendChild(hash);
    if (record.error) li.appendChild(el("div", "error-text", record.error));
    if (record.result !== undefined && record.result !== null) {
      var details = el("details");
      details.appendChild(el("summary", null, "result"));
      details.appendChild(el("pre", null, JSON.stringify(record.result, null, 2)));
      li.appendChild(details);
    }
    li.classList.add("new");
    return li;
  }

  function follow(timeline) {
    if (!window.EventSource || timeline.dataset.finished === "yes") return;
    var sent = parseInt(timeline.dataset.sent || "0", 10);
    var count = document.getElementById("ledger-count");
    var status = document.getElementById("run-status");
    var note = document.getElementById("live-note");
    var source = new EventSource(timeline.dataset.stream + "?from=" + sent);
    source.addEventListener("record", function (event) {
      var index = parseInt(event.lastEventId, 10);
      if (index < sent) return;
      timeline.appendChild(recordItem(index, JSON.parse(event.data)));
      sent = index + 1;
      timeline.dataset.sent = String(sent);
      if (count) count.textContent = String(sent);
      document.body.dispatchEvent(new CustomEvent("ledger-grew"));  // htmx refreshes state and path
      if (status) {
        var live = JSON.parse(event.data).status === "waiting" ? "waiting" : "running";
        status.textContent = live;
        status.className = "status " + live;
      }
    });
    source.addEventListener("end", function (event) {
      source.close();
      var end = JSON.parse(event.data);
      timeline.dataset.finished = "yes";
      if (status) {
        status.textContent = end.status;
        status.className = "status " + end.status;
      }
      if (note) note.textContent = "The run has finished (" + end.status + ").";
      document.body.dispatchEvent(new CustomEvent("ledger-grew"));
    });
    source.onerror = function () {
      if (note && timeline.dataset.finished !== "yes") note.textContent = "Reconnecting…";
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    var timeline = document.getElementById("timeline");
    if (timeline) follow(timeline);
    document.addEventListener("click", function (event) {
      var target = event.target;
      if (target && target.dataset && target.dataset.confirm && !window.confirm(target.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });
})();
