// multimeter report: draws the embedded data with uPlot. No network, no globals
// beyond window.multimeterCharts (the uPlot instances, for tests and curious users)
// and window.multimeterReady (milliseconds from navigation start to "all charts drawn").
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("multimeter-data").textContent);
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  var DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];
  var charts = [];
  var pending = 0;
  window.multimeterCharts = charts;

  // -- formatting ---------------------------------------------------------------
  function num(value, digits) {
    if (value == null) return "–";
    var abs = Math.abs(value);
    if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(2);
    return value.toLocaleString("en", { maximumSignificantDigits: digits || 4 });
  }
  function bytes(value, suffix) {
    if (value == null) return "–";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0, abs = Math.abs(value);
    while (abs >= 1024 && i < units.length - 1) { abs /= 1024; value /= 1024; i++; }
    return num(value, 3) + " " + units[i] + (suffix || "");
  }
  function formatter(unit) {
    if (unit === "B") return function (v) { return bytes(v); };
    if (unit === "B/s") return function (v) { return bytes(v, "/s"); };
    if (unit === "%") return function (v) { return v == null ? "–" : num(v) + " %"; };
    return function (v) { return num(v); };
  }
  function seconds(value) {
    if (value == null) return "–";
    if (value !== 0 && Math.abs(value) < 1) return num(value * 1000, 3) + " ms";
    if (Math.abs(value) >= 120) {
      var m = Math.floor(value / 60), s = value - 60 * m;
      return m + " min " + s.toFixed(1) + " s";
    }
    return num(value, 4) + " s";
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function table(headers, rows, className) {
    var head = el("tr", {}, headers.map(function (h) { return el("th", { text: h }); }));
    var body = rows.map(function (row) {
      return el("tr", {}, row.map(function (cell) {
        return cell instanceof Node ? el("td", {}, [cell]) : el("td", { text: cell == null ? "" : String(cell) });
      }));
    });
    return el("table", { "class": className || "" }, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }
  function section(id, title, note) {
    var box = el("section", { id: id }, [el("h2", { text: title })]);
    if (note) box.appendChild(el("p", { "class": "note", text: note }));
    document.getElementById("content").appendChild(box);
    return box;
  }

  // -- interaction: drag zooms (uPlot), double-click resets, ctrl-wheel zooms, shift-drag pans
  var syncing = false;
  function panAndWheel(u) {
    var over = u.over;
    over.addEventListener("wheel", function (e) {
      if (!(e.ctrlKey || e.altKey || e.metaKey)) return;  // a plain wheel scrolls the page
      e.preventDefault();
      var min = u.scales.x.min, max = u.scales.x.max, range = max - min;
      var at = u.posToVal(e.offsetX, "x");
      var factor = e.deltaY < 0 ? 0.75 : 1 / 0.75;
      var left = at - (at - min) * factor, right = left + range * factor;
      u.setScale("x", { min: left, max: right });
    }, { passive: false });
    over.addEventListener("mousedown", function (e) {
      if (!e.shiftKey) return;
      e.stopImmediatePropagation();  // no drag-to-zoom selection meanwhile
      e.preventDefault();
      var x0 = e.clientX, min = u.scales.x.min, max = u.scales.x.max;
      var perPx = (max - min) / u.over.clientWidth;
      function move(ev) {
        var dx = (ev.clientX - x0) * perPx;
        u.setScale("x", { min: min - dx, max: max - dx });
      }
      function up() {
        document.removeEventListener("mousemove", move);
        document.removeEventListener("mouseup", up);
      }
      document.addEventListener("mousemove", move);
      document.addEventListener("mouseup", up);
    }, true);
  }
  function syncScales(u, key) {
    // Zooming or panning one chart of a group zooms the others alike.
    if (syncing) return;
    syncing = true;
    charts.forEach(function (other) {
      if (other !== u && other._group === u._group) {
        other.setScale(key, { min: u.scales[key].min, max: u.scales[key].max });
      }
    });
    syncing = false;
  }

  // -- marks: labelled vertical lines; measured calls as shaded bands --------------
  // Each measured call (name:enter .. name:exit) shades its time, in a colour per
  // function, and gets a labelled bar in a strip at the top of the plot, one row per
  // nesting depth; other marks are dashed vertical lines labelled below the strip.
  var CALL_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#d4a6c8", "#76b7b2",
                     "#edc948", "#b07aa1", "#86bcb6", "#9c755f", "#bab0ac"];
  var callColor = {};
  function colorOf(name) {
    if (!(name in callColor)) {
      callColor[name] = CALL_COLORS[Object.keys(callColor).length % CALL_COLORS.length];
    }
    return callColor[name];
  }
  var MAX_ROWS = 4, ROW_CSS = 15;
  function rowsOf(run) {
    var depth = -1;
    run.intervals.forEach(function (iv) { depth = Math.max(depth, iv[3]); });
    return Math.min(depth + 1, MAX_ROWS);
  }
  function marksPlugin(runs) {
    function x(u, value) { return u.valToPos(value, "x", true); }
    function clip(u) {
      var box = u.bbox;
      u.ctx.save();
      u.ctx.beginPath();
      u.ctx.rect(box.left, box.top, box.width, box.height);
      u.ctx.clip();
    }
    var ROW = ROW_CSS;
    return {
      hooks: {
        drawAxes: function (u) {
          var ctx = u.ctx, box = u.bbox;
          clip(u);
          ctx.globalAlpha = 0.07;
          runs.forEach(function (run) {
            run.intervals.forEach(function (iv) {
              var left = x(u, iv[0]), right = x(u, iv[1]);
              if (right < box.left || left > box.left + box.width) return;
              ctx.fillStyle = iv[4] ? colorOf(iv[2]) : "#d62728";
              ctx.fillRect(left, box.top, Math.max(right - left, 1), box.height);
            });
          });
          ctx.restore();
        },
        draw: function (u) {
          var ctx = u.ctx, box = u.bbox, dpr = uPlot.pxRatio, row = ROW * dpr;
          var strip = stripHeight(runs) * dpr;
          ctx.save();
          ctx.beginPath();
          ctx.rect(box.left, box.top - strip, box.width, box.height + strip);
          ctx.clip();
          ctx.font = Math.round(11 * dpr) + "px sans-serif";
          ctx.textAlign = "left";
          ctx.textBaseline = "middle";
          var top = box.top - strip;
          runs.forEach(function (run, r) {
            var rows = rowsOf(run);
            run.intervals.forEach(function (iv) {
              if (iv[3] >= rows) return;
              var left = Math.max(x(u, iv[0]), box.left), right = Math.min(x(u, iv[1]), box.left + box.width);
              if (right < left) return;
              var y = top + iv[3] * row;
              ctx.globalAlpha = 0.55;
              ctx.fillStyle = iv[4] ? colorOf(iv[2]) : "#d62728";
              ctx.fillRect(left, y + dpr, Math.max(right - left - dpr, dpr), row - 2 * dpr);
              var text = iv[2] + (iv[4] ? "" : " (raised)");
              if (ctx.measureText(text).width + 6 * dpr < right - left) {
                ctx.globalAlpha = 1;
                ctx.fillStyle = "#111111";
                ctx.fillText(text, left + 3 * dpr, y + row / 2);
              }
            });
            if (runs.length > 1 && rows) {  // whose calls: a bar in the result's colour
              ctx.globalAlpha = 1;
              ctx.fillStyle = COLORS[r % COLORS.length];
              ctx.fillRect(box.left, top + dpr, 4 * dpr, rows * row - 2 * dpr);
            }
            top += rows * row;
          });
          ctx.textBaseline = "top";
          runs.forEach(function (run, r) {
            var color = runs.length > 1 ? COLORS[r % COLORS.length] : "#333333";
            var lastRight = -1, level = 0;
            ctx.strokeStyle = color;
            ctx.lineWidth = dpr;
            run.marks.forEach(function (mark) {
              if (/:(enter|exit|raise.*)$/.test(mark[1])) return;
              var pos = x(u, mark[0]);
              if (pos < box.left || pos > box.left + box.width) return;
              ctx.globalAlpha = 0.8;
              ctx.setLineDash([4 * dpr, 3 * dpr]);
              ctx.beginPath();
              ctx.moveTo(Math.round(pos) + 0.5, box.top - strip);
              ctx.lineTo(Math.round(pos) + 0.5, box.top + box.height);
              ctx.stroke();
              ctx.setLineDash([]);
              var w = ctx.measureText(mark[1]).width;
              if (pos + 3 * dpr < lastRight) {
                level += 1;
                if (level > 2) return;
              } else {
                level = 0;
              }
              var y = box.top + (2 + level * 14 + r * 44) * dpr;
              ctx.globalAlpha = 0.85;
              ctx.fillStyle = "#ffffff";
              ctx.fillRect(pos + 2 * dpr, y, w + 4 * dpr, 13 * dpr);
              ctx.globalAlpha = 1;
              ctx.fillStyle = color;
              ctx.fillText(mark[1], pos + 4 * dpr, y + dpr);
              lastRight = Math.max(lastRight, pos + w + 8 * dpr);
            });
          });
          ctx.restore();
        }
      }
    };
  }
  function stripHeight(runs) {
    // Room above the data for the strip of measured calls (a y-range pad).
    return runs.reduce(function (n, run) { return n + rowsOf(run); }, 0) * ROW_CSS;
  }

  // -- charts ---------------------------------------------------------------------
  function joined(tables) {
    return tables.length === 1 ? tables[0] : uPlot.join(tables);
  }
  function width(box) {
    return Math.max(320, Math.min(box.clientWidth || 1000, 1400) - 8);
  }
  function drawn() {
    pending -= 1;
    if (pending === 0) {
      window.multimeterReady = performance.now();
      document.body.setAttribute("data-charts-drawn", "true");
    }
  }
  var jobs = [];
  function plot(box, options, tables, group) {
    // Made once the page is laid out (see below), so each chart gets its box's width.
    pending += 1;
    box.setAttribute("data-series", String(options.series.length - 1));
    jobs.push(function () { make(box, options, tables, group); });
  }
  function make(box, options, tables, group) {
    var first = true;
    options.width = width(box);
    options.height = options.height || 260;
    options.plugins = options.plugins || [];
    options.cursor = { drag: { x: true, y: false }, sync: { key: group } };
    options.hooks = {
      draw: [function () { if (first) { first = false; drawn(); } }],
      setScale: [function (u, key) { if (key === "x") syncScales(u, key); }]
    };
    var u = new uPlot(options, joined(tables), box);
    u._group = group;
    panAndWheel(u);
    charts.push(u);
  }

  function metricCharts(runs, chartsData) {
    if (!chartsData.length) return;
    var many = runs.length > 1;
    var note = "Drag to zoom, double-click to reset, ctrl + wheel to zoom, shift-drag to pan; " +
      "all charts follow. Lines: marks; shaded: measured calls" +
      (many ? "; results aligned on their start, one colour per result (#1, #2, ... as in the table above)." : ".");
    var holder = el("div", { "class": "grid" });
    section("charts", "Charts", note).appendChild(holder);
    chartsData.forEach(function (chart) {
      var fmt = formatter(chart.unit);
      var subjects = [];
      chart.series.forEach(function (s) {
        if (subjects.indexOf(s.subject) < 0) subjects.push(s.subject);
      });
      var series = [{ label: "time", value: function (u, v) { return seconds(v); } }];
      var tables = [];
      runs.forEach(function (run, r) {
        var mine = chart.series.filter(function (s) { return s.run === r; });
        if (!mine.length) return;
        // From the start (0) on, where the first point comes later: marks before it show.
        var lead = run.t.length && run.t[0] > 0;
        tables.push([lead ? [0].concat(run.t) : run.t].concat(mine.map(function (s) {
          return lead ? [null].concat(s.v) : s.v;
        })));
        mine.forEach(function (s) {
          var k = subjects.indexOf(s.subject);
          series.push({
            label: many ? s.subject + " #" + (r + 1) : s.subject,
            stroke: COLORS[(many ? r : k) % COLORS.length],
            dash: many ? DASHES[k % DASHES.length] : [],
            width: 1.5,
            spanGaps: true,
            points: { show: false },
            value: function (u, v) { return fmt(v); }
          });
        });
      });
      var title = chart.metric + (chart.unit ? " (" + chart.unit + ")" : "");
      var box = el("div", { "class": "chart", "data-metric": chart.metric });
      var figure = el("figure", {}, [
        el("figcaption", {}, [el("strong", { text: title }), el("span", { text: " " + chart.description })]),
        box
      ]);
      holder.appendChild(figure);
      plot(box, {
        series: series,
        scales: { x: { time: false } },
        axes: [
          { label: "seconds from start", values: function (u, splits) { return splits.map(function (v) { return num(v); }); } },
          { label: chart.unit || "", size: 80, values: function (u, splits) { return splits.map(fmt); } }
        ],
        padding: [stripHeight(runs) + 8, 12, null, null],
        plugins: [marksPlugin(runs)]
      }, tables, "metrics");
    });
    if (data.flat.length) {
      holder.parentNode.appendChild(el("p", { "class": "note", text: "Not charted, every value zero or missing: " + data.flat.join(", ") + "." }));
    }
  }

  function callsChart(calls) {
    var holder = section("calls", "Measured calls",
      calls.calls.toLocaleString("en") + " calls of " + calls.functions.length +
      (calls.functions.length === 1 ? " function" : " functions") +
      (calls.errors ? ", " + calls.errors + " raised" : "") + "." +
      (calls.functions.some(function (f) { return f.approximate; }) ?
        " ~ estimated from the duration histograms of aggregate-mode results." : "") +
      (calls.left_out ? " The chart shows the " + calls.series.length + " functions with the most time in calls." : ""));
    holder.appendChild(table(
      ["function", "calls", "errors", "p50", "p95", "max", "CPU total", "CPU mean", "peak memory max"],
      calls.functions.map(function (f) {
        var about = f.approximate ? "~" : "";
        return [f["function"], f.calls, f.errors, about + seconds(f.duration_p50_s), about + seconds(f.duration_p95_s),
                seconds(f.duration_max_s), seconds(f.cpu_total_s), seconds(f.cpu_mean_s),
                f.peak_memory_max_bytes == null ? "–" : bytes(f.peak_memory_max_bytes)];
      }), "summary"));
    if (!calls.series.length) return;
    var series = [{ label: "time", value: function (u, v) { return seconds(v); } }];
    var tables = calls.series.map(function (s, k) {
      series.push({
        label: s["function"],
        stroke: COLORS[k % COLORS.length],
        fill: COLORS[k % COLORS.length],
        paths: function () { return null; },
        points: { show: true, size: 4, fill: COLORS[k % COLORS.length] },
        value: function (u, v) { return seconds(v); }
      });
      return [s.t, s.v];
    });
    var box = el("div", { "class": "chart", "data-metric": "call-duration" });
    holder.appendChild(el("figure", {}, [
      el("figcaption", {}, [el("strong", { text: "call duration (s)" }),
        el("span", { text: " each call at its start, seconds from the first call's start" +
          (calls.aggregate ? "; an aggregate-mode result: its calls' mean, at its cycle's start" : "") +
          (calls.downsampled ? " (lowest and highest per time bucket)" : "") })]),
      box
    ]));
    plot(box, {
      series: series,
      scales: { x: { time: false } },
      axes: [
        { label: "seconds from the first call", values: function (u, s) { return s.map(function (v) { return num(v); }); } },
        { label: "s", size: 80, values: function (u, s) { return s.map(seconds); } }
      ]
    }, tables, "calls");
  }

  function resultsTable(runs) {
    if (!runs.length) return;
    var holder = section("results", runs.length > 1 ? "Results compared" : "Result");
    holder.appendChild(table(
      ["", "result", "identifier", "start", "duration", "points", "marks"],
      runs.map(function (run, r) {
        var swatch = el("span", {}, [
          el("span", { "class": "swatch", style: "background:" + COLORS[r % COLORS.length] }),
          document.createTextNode(runs.length > 1 ? " #" + (r + 1) : "")]);
        return [swatch, run.label, run.identifier, run.start, seconds(run.duration), run.points, run.marks_total];
      }), "results"));
  }

  function factsTable(runs) {
    if (!runs.length) return;
    var holder = section("facts", "Tags and meta data");
    var rows = [];
    [["tag", "tags"], ["meta", "meta"]].forEach(function (kind) {
      var keys = [];
      runs.forEach(function (run) {
        Object.keys(run[kind[1]]).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); });
      });
      keys.sort().forEach(function (k) {
        rows.push([kind[0], k].concat(runs.map(function (run) { return run[kind[1]][k]; })));
      });
    });
    var headers = ["", "key"].concat(runs.map(function (run, r) {
      return runs.length > 1 ? "#" + (r + 1) + " " + run.label : run.label;
    }));
    holder.appendChild(table(headers, rows, "facts"));
  }

  function marksTable(runs) {
    var rows = [];
    runs.forEach(function (run, r) {
      run.marks.forEach(function (mark) {
        rows.push((runs.length > 1 ? ["#" + (r + 1)] : []).concat([seconds(mark[0]), mark[1]]));
      });
    });
    var total = runs.reduce(function (n, run) { return n + run.marks_total; }, 0);
    if (!total) return;
    var holder = section("marks", "Marks", total > rows.length ?
      "The first " + rows.length + " of " + total + " marks." : null);
    var headers = (runs.length > 1 ? ["result"] : []).concat(["time from start", "label"]);
    var details = el("details", rows.length <= 60 ? { open: "" } : {}, [
      el("summary", { text: rows.length + " marks" }), table(headers, rows, "marks")]);
    holder.appendChild(details);
  }

  // -- the page -----------------------------------------------------------------------
  document.getElementById("generated").textContent = data.generated;
  resultsTable(data.runs);
  if (data.calls) callsChart(data.calls);
  metricCharts(data.runs, data.charts);
  factsTable(data.runs);
  marksTable(data.runs);
  if (data.more) section("more", "Not charted", data.more);
  jobs.forEach(function (job) { job(); });
  if (pending === 0) {
    window.multimeterReady = performance.now();
    document.body.setAttribute("data-charts-drawn", "true");
  }
  window.addEventListener("resize", function () {
    charts.forEach(function (u) { u.setSize({ width: width(u.root.parentNode), height: u.height }); });
  });
})();
