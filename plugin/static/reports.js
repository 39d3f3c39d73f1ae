// Charts of the reports page, drawn as inline SVG from the JSON the server embeds in the page.
// No library and no build step: a line chart, bar charts and a heat grid are a few dozen lines each.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var WIDTH = 640, HEIGHT = 220, LEFT = 40, RIGHT = 10, TOP = 10, BOTTOM = 30;

  function node(name, attributes, parent) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes || {}).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    if (parent) { parent.appendChild(element); }
    return element;
  }

  function text(parent, x, y, content, anchor) {
    var element = node("text", {x: x, y: y, "text-anchor": anchor || "middle"}, parent);
    element.textContent = content;
    return element;
  }

  function canvas(id, height) {
    var holder = document.getElementById(id);
    var svg = node("svg", {viewBox: "0 0 " + WIDTH + " " + (height || HEIGHT), role: "img"});
    holder.appendChild(svg);
    return svg;
  }

  function empty(svg, message) {
    text(svg, WIDTH / 2, HEIGHT / 2, message);
  }

  // X positions of n evenly spaced slots, and labels on about ten of them.
  function xAxis(svg, labels, height) {
    var plotWidth = WIDTH - LEFT - RIGHT, step = plotWidth / Math.max(labels.length, 1);
    var every = Math.max(1, Math.ceil(labels.length / 10));
    labels.forEach(function (label, index) {
      if (index % every === 0) { text(svg, LEFT + step * (index + 0.5), (height || HEIGHT) - 12, label); }
    });
    return function (index) { return LEFT + step * (index + 0.5); };
  }

  // Gridlines at round values: quarters for rates, whole steps of 1, 2 or 5 x 10^n for counts.
  function ticksFor(maximum) {
    var rough = Math.max(maximum, 1) / 4, power = Math.pow(10, Math.floor(Math.log10(rough)));
    var step = [1, 2, 5, 10].map(function (m) { return m * power; }).filter(function (s) { return s >= rough; })[0];
    step = Math.max(1, Math.round(step));
    var ticks = [0];
    while (ticks[ticks.length - 1] < maximum) { ticks.push(ticks[ticks.length - 1] + step); }
    return ticks.length > 1 ? ticks : [0, step];
  }

  function yAxis(svg, ticks, format, height) {
    var bottom = (height || HEIGHT) - BOTTOM, plotHeight = bottom - TOP, maximum = ticks[ticks.length - 1];
    ticks.forEach(function (tick) {
      var y = bottom - plotHeight * tick / maximum;
      node("line", {x1: LEFT, x2: WIDTH - RIGHT, y1: y, y2: y, stroke: "#e3e8ee"}, svg);
      text(svg, LEFT - 4, y + 3, format(tick), "end");
    });
    return function (value) { return bottom - plotHeight * value / maximum; };
  }

  // Labels are the local times of the report's zone (each point's "local" start, with its offset).
  function dayLabel(local) { return local.slice(5, 10); }
  function hourLabel(local) { return local.slice(5, 10) + " " + local.slice(11, 13) + "h"; }
  function percent(value) { return Math.round(value * 100) + "%"; }
  function count(value) { return String(Math.round(value)); }

  function hitRateChart() {
    var points = data.daily, svg = canvas("chart-hit-rate");
    if (!points.some(function (p) { return p.applied > 0; })) { return empty(svg, "No SLA applied in this range"); }
    var x = xAxis(svg, points.map(function (p) { return dayLabel(p.local); }));
    var y = yAxis(svg, [0, 0.25, 0.5, 0.75, 1], percent);
    var target = "", actual = "", pen = "M";
    points.forEach(function (p, index) {
      if (p.target !== null) { target += (target ? "L" : "M") + x(index) + "," + y(p.target); }
      if (p.hit_rate === null) { pen = "M"; return; }
      actual += pen + x(index) + "," + y(p.hit_rate);
      pen = "L";
    });
    if (target) {
      node("path", {d: target, fill: "none", stroke: "#c62828", "stroke-dasharray": "5 4", "stroke-width": 1.5,
                    "class": "target-line"}, svg);
    }
    node("path", {d: actual, fill: "none", stroke: "#1f6feb", "stroke-width": 2, "class": "hit-rate-line"}, svg);
    points.forEach(function (p, index) {
      if (p.hit_rate === null) { return; }
      var dot = node("circle", {cx: x(index), cy: y(p.hit_rate), r: 3, fill: "#1f6feb", "class": "point",
                                "data-value": p.hit_rate}, svg);
      node("title", {}, dot).textContent = p.local.slice(0, 10) + ": " + p.hit_rate_text + " of " + p.applied +
        (p.target !== null ? " (target " + percent(p.target) + ")" : "");
    });
    var legend = node("g", {"class": "legend"}, svg);
    node("line", {x1: LEFT + 8, x2: LEFT + 28, y1: TOP + 6, y2: TOP + 6, stroke: "#1f6feb", "stroke-width": 2}, legend);
    text(legend, LEFT + 32, TOP + 9, "hit rate", "start");
    node("line", {x1: LEFT + 90, x2: LEFT + 110, y1: TOP + 6, y2: TOP + 6, stroke: "#c62828", "stroke-dasharray": "5 4"}, legend);
    text(legend, LEFT + 114, TOP + 9, "target", "start");
  }

  function bars(id, labels, series, emptyMessage) {
    var svg = canvas(id), total = 0, maximum = 0;
    series.forEach(function (s) { s.values.forEach(function (v) { total += v; maximum = Math.max(maximum, v); }); });
    if (!total) { return empty(svg, emptyMessage); }
    var x = xAxis(svg, labels), y = yAxis(svg, ticksFor(maximum), count);
    var slot = (WIDTH - LEFT - RIGHT) / labels.length, width = Math.max(1, slot * 0.8 / series.length);
    series.forEach(function (s, position) {
      s.values.forEach(function (value, index) {
        if (!value) { return; }
        var left = x(index) - slot * 0.4 + width * position;
        var bar = node("rect", {x: left, y: y(value), width: width, height: y(0) - y(value), fill: s.color,
                                "class": "bar " + s.name, "data-value": value}, svg);
        node("title", {}, bar).textContent = labels[index] + ": " + value + " " + s.name.replace("-", " ");
      });
    });
  }

  // A long range has too many hours for readable bars: sum them into blocks of 2, 3, 4, 6, 8 or 12 hours,
  // or whole days, so that at most MAX_BARS bars are drawn (30 days: blocks of 8 hours).
  var MAX_BARS = 96, BLOCKS = [1, 2, 3, 4, 6, 8, 12, 24];
  function blockHours(count) {
    var fitting = BLOCKS.filter(function (hours) { return Math.ceil(count / hours) <= MAX_BARS; })[0];
    return fitting || 24 * Math.ceil(count / 24 / MAX_BARS);
  }

  function hourlyChart() {
    // Over a very long range the server sends days instead of hours (each point is then 24 hours).
    var points = data.hourly, pointHours = data.hourly_bucket === "day" ? 24 : 1;
    var hours = blockHours(points.length * pointHours), perBlock = Math.max(1, hours / pointHours), blocks = [];
    for (var start = 0; start < points.length; start += perBlock) {
      var slice = points.slice(start, start + perBlock);
      blocks.push({
        label: hours >= 24 ? dayLabel(slice[0].local) : hourLabel(slice[0].local),
        applied: slice.reduce(function (sum, p) { return sum + p.applied; }, 0),
        missed: slice.reduce(function (sum, p) { return sum + p.conversations_missed; }, 0)
      });
    }
    var caption = document.getElementById("hourly-caption");
    caption.textContent = "Applied and missed per " + (hours === 1 ? "hour" : hours + " hours");
    caption.parentNode.setAttribute("data-block-hours", hours);
    bars("chart-hourly", blocks.map(function (b) { return b.label; }), [
      {name: "applied", color: "#9db9e8", values: blocks.map(function (b) { return b.applied; })},
      {name: "missed", color: "#c62828", values: blocks.map(function (b) { return b.missed; })}
    ], "No SLA applied in this range");
  }

  function missesByHourChart() {
    var labels = [];
    for (var hour = 0; hour < 24; hour++) { labels.push(("0" + hour).slice(-2) + "h"); }
    bars("chart-misses-by-hour", labels, [{name: "misses", color: "#c62828", values: data.grid.by_hour}],
         "No misses in this range");
  }

  function gridChart() {
    var grid = data.grid, height = 200, svg = canvas("chart-grid", height);
    var cellWidth = (WIDTH - LEFT - RIGHT) / 24, cellHeight = (height - TOP - 24) / 7;
    var maximum = Math.max.apply(null, grid.cells.map(function (row) { return Math.max.apply(null, row); }));
    grid.cells.forEach(function (row, day) {
      text(svg, LEFT - 6, TOP + cellHeight * (day + 0.65), grid.weekdays[day], "end");
      row.forEach(function (value, hour) {
        var shade = maximum ? value / maximum : 0;
        var cell = node("rect", {x: LEFT + hour * cellWidth, y: TOP + day * cellHeight, width: cellWidth - 1,
                                 height: cellHeight - 1, rx: 2, "class": "grid-cell", "data-value": value,
                                 fill: value ? "rgba(198, 40, 40, " + (0.15 + 0.85 * shade) + ")" : "#f1f3f5"}, svg);
        node("title", {}, cell).textContent = grid.weekdays[day] + " " + hour + ":00 " + grid.timezone + ": " + value + " misses";
        if (value) {
          text(svg, LEFT + (hour + 0.5) * cellWidth, TOP + cellHeight * (day + 0.65), String(value))
            .style.fill = shade > 0.5 ? "#fff" : "#1f2933";
        }
      });
    });
    for (var hour = 0; hour < 24; hour += 3) { text(svg, LEFT + (hour + 0.5) * cellWidth, height - 8, hour + "h"); }
  }

  hitRateChart();
  hourlyChart();
  missesByHourChart();
  gridChart();
  document.body.setAttribute("data-charts", "ready");
})();
