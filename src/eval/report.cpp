// `lowbit report` (eval/report.h): lowbit's JSON outputs -> Vega-Lite specs, tables and one HTML
// page with Vega inline.
#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lowbit/error.h"

namespace lowbit {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// Versions of each of lowbit's outputs this report reads.
constexpr std::pair<const char*, int> kKinds[] = {
    {"lowbit_compare", 1}, {"lowbit_sensitivity", 1}, {"lowbit_plan", 1},
    {"lowbit_bench", 1},   {"lowbit_train_log", 1},   {"lowbit_reference", 1},
};

struct Input {
  std::string path, kind;
  json doc;                 // one JSON document (every kind but the training log)
  std::vector<json> lines;  // the training log's lines
};

std::string esc(std::string_view s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&':
        r += "&amp;";
        break;
      case '<':
        r += "&lt;";
        break;
      case '>':
        r += "&gt;";
        break;
      case '"':
        r += "&quot;";
        break;
      default:
        r += c;
    }
  }
  return r;
}

// JSON inside <script>: no "</" may close the element early.
std::string script_json(const json& j) {
  std::string s = j.dump();
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<' && i + 1 < s.size() && (s[i + 1] == '/' || s[i + 1] == '!')) {
      r += "\\u003c";
    } else {
      r += s[i];
    }
  }
  return r;
}

std::string kind_of(const json& j, const std::string& path) {
  if (!j.is_object()) {
    throw Error("not one of lowbit's JSON outputs (not an object)", {.file = path});
  }
  for (const auto& [key, version] : kKinds) {
    const auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_number_integer() || it->get<int64_t>() != version) {
      throw Error("from another version of lowbit", {.file = path,
                                                     .field = key,
                                                     .expected = std::to_string(version),
                                                     .found = it->dump().substr(0, 40)});
    }
    return key;
  }
  throw Error(
      "not one of lowbit's JSON outputs (no lowbit_compare, lowbit_sensitivity, "
      "lowbit_plan, lowbit_bench, lowbit_train_log or lowbit_reference key; files "
      "written before lowbit report existed lack it: produce them again)",
      {.file = path});
}

Input load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open", {.file = path});
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Input in{path, "", {}, {}};
  try {
    in.doc = json::parse(text);
    in.kind = kind_of(in.doc, path);
    if (in.kind == "lowbit_train_log") in.lines.push_back(in.doc);
    return in;
  } catch (const json::parse_error&) {
  }
  // JSON lines: a training log.
  std::istringstream ls(text);
  std::string line;
  int64_t n = 0;
  while (std::getline(ls, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      throw Error(std::string("not JSON: ") + e.what(),
                  {.file = path, .field = "line " + std::to_string(n)});
    }
    if (kind_of(j, path) != "lowbit_train_log") {
      throw Error("a JSON-lines file that is not a training log",
                  {.file = path, .field = "line " + std::to_string(n)});
    }
    in.lines.push_back(std::move(j));
  }
  if (in.lines.empty()) throw Error("empty file", {.file = path});
  in.kind = "lowbit_train_log";
  return in;
}

// A number field (nested by dots), or NaN.
double num(const json& j, const std::string& dotted) {
  const json* p = &j;
  size_t a = 0;
  while (true) {
    const size_t b = dotted.find('.', a);
    const std::string key = dotted.substr(a, b == std::string::npos ? std::string::npos : b - a);
    if (!p->is_object()) return NAN;
    const auto it = p->find(key);
    if (it == p->end()) return NAN;
    p = &*it;
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return p->is_number() ? p->get<double>() : NAN;
}

std::string str(const json& j, const char* key, const std::string& fallback = "") {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

struct Chart {
  std::string title, note, command, source;
  json spec;
  int64_t points = 0;  // data points the chart must draw a mark for
  std::string mark;    // the Vega mark class that draws them: symbol or rect
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

json axis(const char* field, const char* title, bool log = false) {
  json a = {{"field", field}, {"type", "quantitative"}, {"title", title}};
  if (log)
    a["scale"] = {{"type", "log"}};
  else
    a["scale"] = {{"zero", false}};
  return a;
}

// The Pareto front of (x, y) points, lower y is better: each point no cheaper one beats.
json pareto(const std::vector<json>& pts, const char* y) {
  std::vector<json> s = pts;
  std::sort(s.begin(), s.end(), [&](const json& a, const json& b) {
    return a["bpw"].get<double>() < b["bpw"].get<double>() ||
           (a["bpw"].get<double>() == b["bpw"].get<double>() &&
            a[y].get<double>() < b[y].get<double>());
  });
  json front = json::array();
  double best = INFINITY;
  for (const auto& p : s) {
    if (p[y].get<double>() < best) best = p[y].get<double>(), front.push_back(p);
  }
  return front;
}

// The model a compare (or reference) input measured: its "model" key, else the base row's file.
std::string model_of(const Input& in) {
  std::string m = str(in.doc, "model");
  if (m.empty() && in.doc.contains("rows") && in.doc["rows"].is_array() && !in.doc["rows"].empty() &&
      in.doc["rows"][0].is_object()) {
    m = str(in.doc["rows"][0], "file");
  }
  return fs::path(m).filename().string();
}

// compare -> bpw x KLD (log) and bpw x PPL, one pair of charts per model; references (rows
// measured elsewhere) beside the model they name, or beside every model when they name none.
void compare_group(const std::vector<const Input*>& group, const std::string& model,
                   std::vector<Chart>& out) {
  std::vector<json> pts;
  std::vector<std::string> commands, sources;
  std::vector<std::vector<std::string>> table;
  for (const Input* inp : group) {
    const Input& in = *inp;
    const bool ref = in.kind == "lowbit_reference";
    const json& rows = in.doc.contains("rows") ? in.doc["rows"] : json::array();
    if (!rows.is_array()) throw Error("rows is not an array", {.file = in.path, .field = "rows"});
    sources.push_back(in.path);
    if (in.doc.contains("command")) commands.push_back(str(in.doc, "command"));
    const std::string label = str(in.doc, "label", ref ? "reference" : "lowbit");
    for (const auto& r : rows) {
      if (!r.is_object()) throw Error("a row is not an object", {.file = in.path, .field = "rows"});
      const double bpw = num(r, "bits_per_weight");
      const double kld = ref ? num(r, "kld") : num(r, "kld.mean");
      const double ppl = ref ? num(r, "ppl") : num(r, "model.ppl");
      const double base_ppl = num(r, "ppl.ppl");
      const std::string name = ref ? str(r, "name") : fs::path(str(r, "file")).filename().string();
      if (!std::isfinite(bpw)) continue;
      std::string group_name = ref ? label : str(r, "method", "lowbit");
      if (!ref && str(r, "kind") == "mix") group_name += " (mix)";
      if (!std::isfinite(kld)) {  // the base row
        table.push_back({name, fixed(bpw, 3), fixed(base_ppl, 4), "(base)", "", label});
        continue;
      }
      json p = {{"name", name}, {"bpw", bpw}, {"kld", std::max(kld, 1e-6)},
                {"group", group_name}, {"source", ref ? label : "lowbit"},
                {"type", str(r, "type")}};
      if (std::isfinite(ppl)) p["ppl"] = ppl;
      pts.push_back(p);
      table.push_back({name, fixed(bpw, 3), fixed(ppl, 4), fixed(kld, 5),
                       fixed(num(r, "top1") * 100, 2), group_name});
    }
  }
  if (pts.empty()) return;
  std::string command;
  for (const auto& c : commands) command += (command.empty() ? "" : "\n") + c;
  std::string source;
  for (const auto& s : sources) source += (source.empty() ? "" : ", ") + s;
  auto scatter = [&](const char* y, const char* ytitle, bool log) {
    std::vector<json> with;
    for (const auto& p : pts)
      if (p.contains(y)) with.push_back(p);
    json tooltip = json::array({{{"field", "name"}},
                                {{"field", "group"}},
                                {{"field", "bpw"}, {"format", ".3f"}},
                                {{"field", y}, {"format", ".5g"}}});
    json spec = {
        {"$schema", "https://vega.github.io/schema/vega-lite/v6.json"},
        {"width", 560},
        {"height", 320},
        {"layer",
         json::array(
             {{{"data", {{"values", pareto(with, y)}}},
               {"mark", {{"type", "line"}, {"color", "#999"}, {"strokeDash", {4, 3}}}},
               {"encoding", {{"x", axis("bpw", "bits per weight")}, {"y", axis(y, ytitle, log)}}}},
              {{"data", {{"values", with}}},
               {"mark", {{"type", "point"}, {"filled", true}, {"size", 80}}},
               {"encoding",
                {{"x", axis("bpw", "bits per weight")},
                 {"y", axis(y, ytitle, log)},
                 {"color", {{"field", "group"}, {"type", "nominal"}, {"title", "method"}}},
                 {"shape", {{"field", "source"}, {"type", "nominal"}, {"title", "measured by"}}},
                 {"tooltip", tooltip}}}}})}};
    if (with.empty()) return;
    Chart c;
    c.title = std::string("Bits per weight against ") + ytitle + (model.empty() ? "" : ": " + model);
    c.note = "One point per file; the dashed line is the Pareto front (no cheaper file is better).";
    c.command = command, c.source = source, c.spec = spec, c.points = int64_t(with.size());
    c.mark = "symbol";
    c.header = {"file", "bits per weight", "PPL", "KLD", "top-1 %", "method"};
    c.rows = table;
    out.push_back(std::move(c));
  };
  scatter("kld", "KL divergence", true);
  scatter("ppl", "perplexity", true);
}

void compare_charts(const std::vector<Input>& ins, std::vector<Chart>& out) {
  std::vector<std::string> models;  // in the inputs' order
  std::map<std::string, std::vector<const Input*>> groups;
  for (const auto& in : ins) {
    if (in.kind != "lowbit_compare") continue;
    const std::string m = model_of(in);
    if (!groups.count(m)) models.push_back(m);
    groups[m].push_back(&in);
  }
  for (const auto& in : ins) {
    if (in.kind != "lowbit_reference") continue;
    const std::string m = fs::path(str(in.doc, "model")).filename().string();
    if (!m.empty() && !groups.count(m)) {
      throw Error("reference rows for a model no compare input measured", {.file = in.path,
                  .field = "model", .found = m});
    }
    for (auto& [name, g] : groups) {
      if (m.empty() || m == name) g.push_back(&in);
    }
  }
  for (const auto& m : models) compare_group(groups[m], models.size() > 1 ? m : "", out);
}

// sensitivity -> tensor x format heat map of cost; a plan's choices marked.
void sensitivity_charts(const std::vector<Input>& ins, std::vector<Chart>& out) {
  const Input* plan = nullptr;
  for (const auto& in : ins)
    if (in.kind == "lowbit_plan") plan = &in;
  for (const auto& in : ins) {
    if (in.kind != "lowbit_sensitivity") continue;
    const json& ts = in.doc.contains("tensors") ? in.doc["tensors"] : json::array();
    if (!ts.is_array())
      throw Error("tensors is not an array", {.file = in.path, .field = "tensors"});
    json cells = json::array(), chosen = json::array();
    std::vector<std::vector<std::string>> table;
    std::map<std::string, std::string> pick;
    if (plan) {
      for (const auto& t : plan->doc.value("tensors", json::array())) {
        if (t.is_object()) pick[str(t, "name")] = str(t, "format");
      }
    }
    for (const auto& t : ts) {
      if (!t.is_object() || !t.contains("entries") || !t["entries"].is_array()) {
        throw Error("a tensor without entries", {.file = in.path, .field = "tensors"});
      }
      const std::string name = str(t, "name");
      for (const auto& e : t["entries"]) {
        const double cost = num(e, "cost");
        if (!std::isfinite(cost)) continue;
        cells.push_back({{"tensor", name},
                         {"format", str(e, "format")},
                         {"cost", std::max(cost, 0.0)},
                         {"bytes", num(e, "bytes")}});
        table.push_back({name, str(e, "format"), fixed(cost, 6), fixed(num(e, "bytes"), 0),
                         pick.count(name) && pick[name] == str(e, "format") ? "chosen" : ""});
      }
      if (pick.count(name)) chosen.push_back({{"tensor", name}, {"format", pick[name]}});
    }
    if (cells.empty()) continue;
    json layers = json::array(
        {{{"data", {{"values", cells}}},
          {"mark", "rect"},
          {"encoding",
           {{"x", {{"field", "format"}, {"type", "nominal"}, {"title", "format"}}},
            {"y",
             {{"field", "tensor"}, {"type", "nominal"}, {"title", nullptr}, {"sort", nullptr}}},
            {"color",
             {{"field", "cost"},
              {"type", "quantitative"},
              {"title", "cost"},
              {"scale", {{"type", "symlog"}, {"scheme", "orangered"}}}}},
            {"tooltip", json::array({{{"field", "tensor"}},
                                     {{"field", "format"}},
                                     {{"field", "cost"}, {"format", ".4g"}}})}}}}});
    if (!chosen.empty()) {
      layers.push_back({{"data", {{"values", chosen}}},
                        {"mark",
                         {{"type", "point"},
                          {"shape", "diamond"},
                          {"filled", true},
                          {"color", "#1f4e9c"},
                          {"size", 60}}},
                        {"encoding",
                         {{"x", {{"field", "format"}, {"type", "nominal"}}},
                          {"y", {{"field", "tensor"}, {"type", "nominal"}, {"sort", nullptr}}}}}});
    }
    Chart c;
    c.title = "Per-tensor sensitivity: cost of each format (" + str(in.doc, "metric", "kld") + ")";
    c.note = plan ? "Diamonds: the plan's choice per tensor (" + plan->path + ")."
                  : "Darker is costlier. Give a .plan.json too to mark a plan's choices.";
    c.command = str(in.doc, "command");
    c.source = in.path + (plan ? ", " + plan->path : "");
    c.spec = {{"$schema", "https://vega.github.io/schema/vega-lite/v6.json"},
              {"width", {{"step", 34}}},
              {"height", {{"step", 12}}},
              {"layer", layers}};
    c.points = int64_t(cells.size()), c.mark = "rect";
    c.header = {"tensor", "format", "cost", "bytes", "plan"};
    c.rows = std::move(table);
    out.push_back(std::move(c));
  }
}

// bench -> generation tokens/s per file against the same run's bandwidth limit.
void bench_charts(const std::vector<Input>& ins, std::vector<Chart>& out) {
  json vals = json::array();
  std::vector<std::vector<std::string>> table;
  std::string command, source;
  for (const auto& in : ins) {
    if (in.kind != "lowbit_bench") continue;
    const std::string name = fs::path(str(in.doc, "model")).filename().string();
    const double tg = num(in.doc, "tg.tokens_per_second.median");
    const double pp = num(in.doc, "pp.tokens_per_second.median");
    const double limit = num(in.doc, "bandwidth.before.tg_limit_tokens_per_second");
    if (!std::isfinite(tg)) continue;
    vals.push_back({{"file", name}, {"what", "generation"}, {"tps", tg}});
    if (std::isfinite(limit))
      vals.push_back({{"file", name}, {"what", "bandwidth limit"}, {"tps", limit}});
    table.push_back({name, fixed(pp, 1), fixed(tg, 1), fixed(limit, 1),
                     std::isfinite(limit) ? fixed(100 * tg / limit, 1) : ""});
    if (in.doc.contains("command"))
      command += (command.empty() ? "" : "\n") + str(in.doc, "command");
    source += (source.empty() ? "" : ", ") + in.path;
  }
  if (vals.empty()) return;
  Chart c;
  c.title = "Generation speed against the memory-bandwidth limit";
  c.note =
      "Per file: tokens/s generated (median) beside the limit the same run's bandwidth probe "
      "sets (weights read once per token).";
  c.command = command, c.source = source;
  c.spec = {{"$schema", "https://vega.github.io/schema/vega-lite/v6.json"},
            {"width", {{"step", 26}}},
            {"height", 300},
            {"data", {{"values", vals}}},
            {"mark", "bar"},
            {"encoding",
             {{"x", {{"field", "file"}, {"type", "nominal"}, {"title", nullptr}}},
              {"xOffset", {{"field", "what"}, {"type", "nominal"}}},
              {"y", {{"field", "tps"}, {"type", "quantitative"}, {"title", "tokens/s"}}},
              {"color", {{"field", "what"}, {"type", "nominal"}, {"title", nullptr}}},
              {"tooltip", json::array({{{"field", "file"}},
                                       {{"field", "what"}},
                                       {{"field", "tps"}, {"format", ".1f"}}})}}}};
  c.points = int64_t(vals.size()), c.mark = "rect";
  c.header = {"file", "prompt t/s", "generation t/s", "limit t/s", "% of limit"};
  c.rows = std::move(table);
  out.push_back(std::move(c));
}

// training logs -> loss and validation loss against step.
void train_charts(const std::vector<Input>& ins, std::vector<Chart>& out) {
  for (const auto& in : ins) {
    if (in.kind != "lowbit_train_log") continue;
    json vals = json::array();
    std::vector<std::vector<std::string>> table;
    std::string command;
    for (const auto& l : in.lines) {
      const double step = num(l, "step"), loss = num(l, "loss"), val = num(l, "val_loss");
      if (l.contains("command")) command = str(l, "command");
      if (!std::isfinite(step) || !std::isfinite(loss)) continue;
      vals.push_back(
          {{"step", step}, {"loss", loss}, {"series", "training"}, {"tokens", num(l, "tokens")}});
      if (std::isfinite(val))
        vals.push_back({{"step", step}, {"loss", val}, {"series", "validation"}});
      table.push_back({fixed(step, 0), fixed(num(l, "tokens"), 0), fixed(loss, 4), fixed(val, 4),
                       fixed(num(l, "lr"), 6), fixed(num(l, "tokens_per_second"), 0)});
    }
    if (vals.empty()) continue;
    // QAT logs say what their loss is (kl: the KL divergence to the original model).
    const bool kl = !in.lines.empty() && str(in.lines[0], "loss_kind") == "kl";
    const char* ytitle = kl ? "KL divergence to the original (nats/token)" : "loss (nats/token)";
    json enc = {{"x", {{"field", "step"}, {"type", "quantitative"}, {"title", "step"}}},
                {"y",
                 {{"field", "loss"},
                  {"type", "quantitative"},
                  {"title", ytitle},
                  {"scale", {{"zero", false}}}}},
                {"color", {{"field", "series"}, {"type", "nominal"}, {"title", nullptr}}}};
    json tooltip = json::array(
        {{{"field", "series"}}, {{"field", "step"}}, {{"field", "loss"}, {"format", ".4f"}}});
    Chart c;
    c.title = "Training: loss against step (" + fs::path(in.path).filename().string() + ")";
    c.note = "Training loss of every step and validation loss where measured.";
    c.command = command, c.source = in.path;
    json points_enc = enc;
    points_enc["tooltip"] = tooltip;
    c.spec = {{"$schema", "https://vega.github.io/schema/vega-lite/v6.json"},
              {"width", 560},
              {"height", 300},
              {"data", {{"values", vals}}},
              {"layer",
               json::array({{{"mark", {{"type", "line"}, {"strokeWidth", 1.5}}}, {"encoding", enc}},
                            {{"mark", {{"type", "point"}, {"filled", true}, {"size", 18}}},
                             {"encoding", points_enc}}})}};
    c.points = int64_t(vals.size()), c.mark = "symbol";
    c.header = {"step", "tokens", "loss", "validation loss", "lr", "tokens/s"};
    c.rows = std::move(table);
    out.push_back(std::move(c));
  }
}

const char* kStyle = R"(
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2.2em}
table{border-collapse:collapse;font-size:.85em;margin:.8em 0}
td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}details{margin:.5em 0}pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}
.note{color:#555;font-size:.9em}.chart{min-height:100px}
)";

// Renders every spec, then writes what rendered into #lowbit-status.
const char* kRender = R"(
(function () {
  var status = {charts: 0, rendered: 0, marks: {}, expected: {}, errors: []};
  window.addEventListener('error', function (e) { status.errors.push(String(e.message)); });
  var origError = console.error;
  console.error = function () { status.errors.push(Array.prototype.join.call(arguments, ' ')); origError.apply(console, arguments); };
  var charts = JSON.parse(document.getElementById('lowbit-specs').textContent);
  status.charts = charts.length;
  function done() { document.getElementById('lowbit-status').textContent = JSON.stringify(status); }
  Promise.all(charts.map(function (c) {
    var el = document.getElementById(c.id);
    status.expected[c.id] = c.points;
    try {
      var view = new vega.View(vega.parse(vegaLite.compile(c.spec).spec), {renderer: 'svg', container: el, hover: true});
      return view.runAsync().then(function () {
        status.rendered += 1;
        status.marks[c.id] = el.querySelectorAll('g.mark-' + c.mark + '.role-mark > path').length;
      }).catch(function (e) { status.errors.push(c.id + ': ' + e); });
    } catch (e) { status.errors.push(c.id + ': ' + e); return Promise.resolve(); }
  })).then(done, function (e) { status.errors.push(String(e)); done(); });
})();
)";

}  // namespace

std::string build_report(const std::vector<std::string>& paths, const ReportOptions& o,
                         std::string_view vega_js, std::string_view vega_lite_js) {
  if (paths.empty()) throw Error("no input: give lowbit's JSON outputs");
  std::vector<Input> ins;
  for (const auto& p : paths) ins.push_back(load(p));
  std::vector<Chart> charts;
  compare_charts(ins, charts);
  sensitivity_charts(ins, charts);
  bench_charts(ins, charts);
  train_charts(ins, charts);
  if (charts.empty()) {
    throw Error(
        "nothing to draw: the inputs hold no measured rows (a plan needs its sensitivity "
        "file, a reference needs lowbit's compare output beside it)",
        {.file = paths.front()});
  }
  std::string h = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" +
                  esc(o.title) + "</title>\n<style>" + kStyle + "</style>\n<script>" +
                  std::string(vega_js) + "</script>\n<script>" + std::string(vega_lite_js) +
                  "</script>\n</head><body>\n<h1>" + esc(o.title) + "</h1>\n<p class=\"note\">" +
                  std::to_string(charts.size()) + " charts from";
  for (const auto& p : paths) h += " <code>" + esc(p) + "</code>";
  h += ". Drawn with Vega-Lite; every chart's data is in the table under it.</p>\n";
  json specs = json::array();
  for (size_t i = 0; i < charts.size(); ++i) {
    const Chart& c = charts[i];
    const std::string id = "chart-" + std::to_string(i);
    h += "<section><h2>" + esc(c.title) + "</h2>\n<p class=\"note\">" + esc(c.note) +
         "</p>\n<div class=\"chart\" id=\"" + id + "\"></div>\n<details" +
         (c.rows.size() <= 40 ? " open" : "") + "><summary>Data (" + std::to_string(c.rows.size()) +
         " rows) from <code>" + esc(c.source) + "</code></summary>\n<table><tr>";
    for (const auto& col : c.header) h += "<th>" + esc(col) + "</th>";
    h += "</tr>\n";
    for (const auto& r : c.rows) {
      h += "<tr>";
      for (const auto& v : r) h += "<td>" + esc(v) + "</td>";
      h += "</tr>\n";
    }
    h += "</table>\n<p class=\"note\">Command:</p><pre>" +
         esc(c.command.empty() ? "(not recorded in the input)" : c.command) +
         "</pre></details></section>\n";
    specs.push_back({{"id", id}, {"spec", c.spec}, {"points", c.points}, {"mark", c.mark}});
  }
  h += "<pre id=\"lowbit-status\" hidden></pre>\n<script type=\"application/json\" "
       "id=\"lowbit-specs\">" +
       script_json(specs) + "</script>\n<script>" + kRender + "</script>\n</body></html>\n";
  return h;
}

}  // namespace lowbit
