// The status page: polls /status.json (with its ETag) and draws the queues.
// Every string from outside (subjects, project names, reasons) goes into the
// page through textContent or an attribute: never as markup.
// Nodes are kept by key between polls, so a job's row is the same element
// from queued to its result, and an item's panel until it leaves.
"use strict";

(function () {
  const POLL_MS = 3000;
  const root = document.getElementById("gk-status");
  if (!root) return;
  const source = root.dataset.source || "/status.json";
  const fixedChange = root.dataset.change || "";
  const form = document.getElementById("gk-filter");
  const summary = document.getElementById("gk-summary");
  const pipelinesNode = document.getElementById("gk-pipelines");
  const FIELDS = ["project", "change", "pipeline", "branch"];

  let etag = null;
  let latest = null;
  let timer = null;
  let inFlight = null;

  // -- small DOM helpers -------------------------------------------------
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // The child of ``parent`` with data-key ``key`` (made when missing), marked
  // as seen in this pass; ``prune`` removes the children not seen.
  function keyed(parent, key, tag, className) {
    let node = null;
    for (const child of parent.children) {
      if (child.dataset.key === key) { node = child; break; }
    }
    if (node === null) {
      node = el(tag, className);
      node.dataset.key = key;
      parent.appendChild(node);
    }
    node.dataset.seen = "1";
    return node;
  }

  function prune(parent) {
    for (const child of Array.from(parent.children)) {
      if (child.dataset.key === undefined) continue;
      if (child.dataset.seen === "1") delete child.dataset.seen;
      else child.remove();
    }
  }

  // A child element identified by role inside ``parent`` (made once).
  function part(parent, role, tag, className) {
    let node = parent.querySelector(":scope > [data-role='" + role + "']");
    if (node === null) {
      node = el(tag, className);
      node.dataset.role = role;
      parent.appendChild(node);
    }
    return node;
  }

  function setText(node, text) {
    const value = text === null || text === undefined ? "" : String(text);
    if (node.textContent !== value) node.textContent = value;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "unknown";
    let seconds = Math.max(0, Math.round(ms / 1000));
    const hours = Math.floor(seconds / 3600);
    seconds -= hours * 3600;
    const minutes = Math.floor(seconds / 60);
    seconds -= minutes * 60;
    if (hours) return hours + " h " + minutes + " min";
    if (minutes) return minutes + " min";
    return seconds + " s";
  }

  function safeHref(url) {
    // Only http(s) links from the data: never javascript: or data:.
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  // -- the filter, kept in the URL -------------------------------------------
  function readFilter() {
    const params = new URLSearchParams(window.location.search);
    const filter = {};
    for (const name of FIELDS) {
      filter[name] = (params.get(name) || "").trim().toLowerCase();
      form.elements[name].value = params.get(name) || "";
    }
    if (fixedChange) {
      filter.change = fixedChange.toLowerCase();
      form.elements.change.value = fixedChange;
      form.elements.change.disabled = true;
    }
    return filter;
  }

  function writeFilter() {
    const params = new URLSearchParams();
    for (const name of FIELDS) {
      if (name === "change" && fixedChange) continue;
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    const query = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }

  function matches(filter, pipeline, item) {
    const has = (wanted, value) => !wanted || String(value || "").toLowerCase().includes(wanted);
    if (!has(filter.pipeline, pipeline.name)) return false;
    if (!has(filter.project, item.project)) return false;
    if (!has(filter.branch, item.branch)) return false;
    if (filter.change) {
      const id = String(item.id || "").toLowerCase();
      if (fixedChange ? id !== filter.change : !id.includes(filter.change)) return false;
    }
    return true;
  }

  // -- drawing -----------------------------------------------------------------
  function itemState(item) {
    if ((item.failing_reasons || []).some((r) => r.includes("merge conflict"))) return "conflict";
    if ((item.failing_reasons || []).length) return "failing";
    if (!item.active || !item.live) return "waiting";
    return "ok";
  }

  function drawJob(list, job) {
    const row = keyed(list, job.name, "li", "gk-job");
    const name = part(row, "name", "a", "gk-job-name");
    setText(name, job.name);
    const href = job.uuid ? "/build/" + encodeURIComponent(job.uuid) : safeHref(job.report_url);
    if (href) name.setAttribute("href", href);
    else name.removeAttribute("href");
    const voting = part(row, "voting", "span", "gk-nonvoting");
    setText(voting, job.voting ? "" : "(non-voting)");
    const bar = part(row, "bar", "progress", "gk-progress");
    const state = part(row, "state", "span", "gk-job-state");
    let label;
    if (job.result) {
      label = job.result;
      bar.hidden = true;
    } else if (job.start_time) {
      label = "running";
      bar.hidden = false;
      const elapsed = job.elapsed_time || 0;
      if (job.remaining_time !== null && job.remaining_time !== undefined) {
        bar.max = elapsed + job.remaining_time || 1;
        bar.value = elapsed;
        bar.title = duration(job.remaining_time) + " left";
      } else {
        bar.removeAttribute("value"); // indeterminate: no estimate yet
        bar.title = "no estimate yet";
      }
    } else {
      // Not dispatched: queued, or held back by a job sharing its mutex.
      label = job.uuid ? "starting"
        : job.waiting_for_mutex ? "waiting for mutex " + job.waiting_for_mutex : "queued";
      bar.hidden = true;
    }
    setText(state, label);
    state.className = "gk-job-state result-" + (job.result || (job.start_time ? "RUNNING" : "QUEUED"));
    row.dataset.result = job.result || "";
  }

  // The signed-in operator's CSRF token (base.html draws it only then):
  // without it no action form is drawn.
  const csrfMeta = document.querySelector("meta[name='gk-csrf']");
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  // A form posting ``fields`` to ``action``, back to this page; values set
  // as properties, never parsed as markup.
  function actionForm(action, label, fields) {
    const form = el("form", "gk-inline");
    form.method = "post";
    form.action = action;
    const all = Object.assign({ csrf: csrf, next: location.pathname + location.search }, fields);
    for (const name of Object.keys(all)) {
      const input = el("input");
      input.type = "hidden";
      input.name = name;
      input.value = all[name];
      form.appendChild(input);
    }
    const button = el("button", "gk-action-" + action.split("/").pop(), label);
    button.type = "submit";
    form.appendChild(button);
    return form;
  }

  function drawActions(panel, pipelineName, item) {
    if (!csrf || !item.id) return;
    const actions = part(panel, "actions", "div", "gk-item-actions");
    if (actions.children.length) return;
    const fields = { pipeline: pipelineName, project: item.project || "", change: item.id };
    actions.appendChild(actionForm("/action/dequeue", "Dequeue", fields));
    actions.appendChild(actionForm("/action/promote", "Promote", fields));
    actions.appendChild(actionForm("/action/enqueue", "Re-enqueue", fields));
  }

  function drawItem(queueNode, item, byId, now, pipelineName) {
    const key = item.id || item.zuul_ref || item.project;
    const panel = keyed(queueNode, key, "div", "gk-item");
    queueNode.appendChild(panel); // queue order (a promote moves it; the node stays)
    const state = itemState(item);
    panel.className = "gk-item gk-item-" + state;
    panel.dataset.change = item.id || "";

    const head = part(panel, "head", "div", "gk-item-head");
    const icon = part(head, "icon", "span", "gk-icon");
    icon.className = "gk-icon gk-icon-" + state;
    icon.title =
      state === "failing" || state === "conflict"
        ? "Failing because " + item.failing_reasons.join(", ")
        : state === "waiting" ? "waiting until closer to the head of the queue" : "succeeding";
    const project = part(head, "project", "span", "gk-project");
    setText(project, item.project);
    const link = part(head, "link", "a", "gk-change");
    const id = item.id || "";
    // A timer's item has no change nor revision: its ref names it.
    setText(link, /^[0-9a-f]{40}$/.test(id) ? id.slice(0, 7) : id || item.ref || "");
    const href = item.url ? safeHref(item.url) : null;
    if (href) link.setAttribute("href", href);
    else link.removeAttribute("href");
    const branch = part(head, "branch", "span", "gk-branch");
    setText(branch, item.branch || "");
    const subject = part(panel, "subject", "div", "gk-subject");
    setText(subject, item.subject || "");

    // The changes this item is tested on top of, nearest last: the chain.
    const chain = part(panel, "chain", "div", "gk-chain");
    const ahead = [];
    for (let at = item.item_ahead; at && byId[at] && ahead.length < 50; at = byId[at].item_ahead) {
      ahead.unshift(at);
    }
    const chainText = ahead.length ? ahead.concat([id || "this"]).join(" → ") : "";
    setText(chain, chainText ? "on top of: " + chainText : "");
    chain.hidden = !chainText;

    const times = part(panel, "times", "div", "gk-times");
    const eta = part(times, "eta", "span", "gk-eta");
    setText(eta, "ETA " + duration(item.remaining_time));
    const age = part(times, "age", "span", "gk-age");
    const waited = item.enqueue_time ? now - item.enqueue_time : 0;
    setText(age, "queued " + duration(waited));
    age.className =
      "gk-age " + (waited >= 4 * 3600e3 ? "gk-age-danger" : waited >= 2 * 3600e3 ? "gk-age-warn" : "gk-age-ok");

    const reasons = part(panel, "reasons", "div", "gk-reasons");
    setText(reasons, (item.failing_reasons || []).length ? "failing: " + item.failing_reasons.join("; ") : "");
    reasons.hidden = !(item.failing_reasons || []).length;

    const jobs = part(panel, "jobs", "ul", "gk-jobs");
    for (const job of item.jobs || []) drawJob(jobs, job);
    prune(jobs);
    drawActions(panel, pipelineName, item);
  }

  function draw(status) {
    const filter = readFilter();
    const now = status.status_time || Date.now();
    let shown = 0;
    for (const pipeline of status.pipelines || []) {
      const section = keyed(pipelinesNode, pipeline.name, "section", "gk-pipeline");
      const title = part(section, "title", "h2", "gk-pipeline-name");
      const description = part(section, "description", "p", "gk-pipeline-description");
      setText(description, pipeline.description || "");
      // disable-after-consecutive-failures: said even when the pipeline is empty.
      const state = part(section, "state", "p", "gk-pipeline-disabled");
      setText(state, pipeline.disabled ? "disabled after failures in a row: it reports only through its disabled reporters until the next reconfiguration" : "");
      state.hidden = !pipeline.disabled;
      const queues = part(section, "queues", "div", "gk-queues");
      let count = 0;
      const withItems = (pipeline.change_queues || []).filter((q) => q.heads.length);
      for (const queue of withItems) {
        const items = [].concat(...queue.heads).filter((i) => matches(filter, pipeline, i));
        if (!items.length) continue;
        const queueNode = keyed(queues, queue.name, "div", "gk-queue");
        const label = part(queueNode, "label", "h3", "gk-queue-name");
        setText(label, withItems.length > 1 || queue.window ? "queue " + queue.name + (queue.window ? " (window " + queue.window + ")" : "") : "");
        label.hidden = !label.textContent;
        const list = part(queueNode, "items", "div", "gk-items");
        const byId = {};
        for (const chainItems of queue.heads) for (const i of chainItems) if (i.id) byId[i.id] = i;
        for (const item of items) drawItem(list, item, byId, now, pipeline.name);
        prune(list);
        count += items.length;
      }
      prune(queues);
      setText(title, pipeline.name + (count ? " (" + count + ")" : ""));
      // Empty pipelines stay, folded to their name.
      section.classList.toggle("gk-folded", count === 0 && !pipeline.disabled);
      shown += count;
    }
    prune(pipelinesNode);
    const parts = [
      shown + " item" + (shown === 1 ? "" : "s") + " shown",
      "events waiting: " + ((status.trigger_event_queue || {}).length || 0),
      "results waiting: " + ((status.result_event_queue || {}).length || 0),
      "gatekeeper " + status.zuul_version,
    ];
    if (status.last_reconfigured) {
      parts.push("reconfigured " + new Date(status.last_reconfigured).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    }
    setText(summary, parts.join(" · "));
    summary.classList.remove("gk-stale");
  }

  // -- polling, paused while the tab is hidden --------------------------------
  async function poll() {
    timer = null;
    if (document.hidden) return;
    if (inFlight) inFlight.abort();
    const controller = new AbortController();
    inFlight = controller;
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const response = await fetch(source, { headers: headers, cache: "no-store", signal: controller.signal });
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        latest = await response.json();
        draw(latest);
      } else if (response.status !== 304) {
        summary.classList.add("gk-stale");
        setText(summary, "the status could not be read (HTTP " + response.status + "); trying again");
      }
    } catch (error) {
      if (error.name !== "AbortError") {
        summary.classList.add("gk-stale");
        setText(summary, "the status could not be read; trying again");
      }
    } finally {
      if (inFlight === controller) inFlight = null;
      schedule();
    }
  }

  function schedule() {
    if (timer === null && !document.hidden) timer = window.setTimeout(poll, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
    } else if (timer === null && inFlight === null) {
      poll();
    }
  });

  form.addEventListener("input", () => {
    writeFilter();
    if (latest) draw(latest);
  });
  form.addEventListener("reset", () => {
    window.setTimeout(() => {
      writeFilter();
      if (latest) draw(latest);
    }, 0);
  });
  form.addEventListener("submit", (event) => event.preventDefault());

  readFilter();
  poll();
})();
