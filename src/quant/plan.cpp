// Mixed-precision rules, the budget planner and plan files (see plan.h).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "quant/plan.h"

#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "lowbit/error.h"
#include "lowbit/output_file.h"

namespace lowbit {

using Json = nlohmann::json;

// ---- Rules ----

struct TypeRules::Compiled {
  TypeRule rule;
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

TypeRules::TypeRules() = default;
TypeRules::~TypeRules() = default;
TypeRules::TypeRules(TypeRules&&) noexcept = default;
TypeRules& TypeRules::operator=(TypeRules&&) noexcept = default;

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

// origin "FILE:LINE" or "--tensor-type" -> the error context's file and field.
ErrorContext where(const std::string& origin) {
  const size_t colon = origin.rfind(':');
  if (colon != std::string::npos && colon + 1 < origin.size() &&
      std::all_of(origin.begin() + long(colon) + 1, origin.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    return {.file = origin.substr(0, colon), .field = "line " + origin.substr(colon + 1)};
  }
  return {.file = "argument " + origin};
}

Format parse_rule_format(const std::string& type, const std::string& origin) {
  std::optional<Format> f = Format::find(type);
  if (!f) {
    ErrorContext c = where(origin);
    c.expected = "a format name (lowbit formats)", c.found = type;
    throw Error("unknown tensor type", c);
  }
  return *f;
}

}  // namespace

void TypeRules::add(const std::string& pattern, const Format& f, const std::string& origin) {
  if (f.info().activation_only) {
    ErrorContext c = where(origin);
    c.expected = "a weight format", c.found = f.name();
    throw Error("format is for activations only, not weights", c);
  }
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0,
                                   &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    ErrorContext c = where(origin);
    c.offset = int64_t(off), c.expected = "a regular expression (PCRE2)";
    c.found = pattern + " (" + reinterpret_cast<const char*>(msg) + ")";
    throw Error("bad tensor-name regex", c);
  }
  auto r = std::make_unique<Compiled>();
  r->rule = {pattern, f, origin};
  r->code = code;
  rules_.push_back(std::move(r));
}

void TypeRules::add_argument(const std::string& arg) {
  const size_t eq = arg.rfind('=');
  const std::string pattern = eq == std::string::npos ? "" : trim(arg.substr(0, eq));
  const std::string type = eq == std::string::npos ? "" : trim(arg.substr(eq + 1));
  if (pattern.empty() || type.empty()) {
    throw Error("--tensor-type takes REGEX=TYPE", {.file = "argument --tensor-type",
                                                   .expected = "REGEX=TYPE, e.g. attn_v=q6_k",
                                                   .found = arg});
  }
  add(pattern, parse_rule_format(type, "--tensor-type"), "--tensor-type");
}

void TypeRules::add_recipe_text(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const std::string at = origin + ":" + std::to_string(n);
    if (const size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    const size_t eq = line.rfind('=');
    const std::string pattern = eq == std::string::npos ? "" : trim(line.substr(0, eq));
    const std::string type = eq == std::string::npos ? "" : trim(line.substr(eq + 1));
    if (pattern.empty() || type.empty()) {
      throw Error("recipe line does not parse", {.file = origin,
                                                 .field = "line " + std::to_string(n),
                                                 .expected = "REGEX = TYPE",
                                                 .found = line});
    }
    add(pattern, parse_rule_format(type, at), at);
  }
}

void TypeRules::add_recipe_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the recipe", {.file = path, .field = "--recipe"});
  std::stringstream ss;
  ss << f.rdbuf();
  add_recipe_text(ss.str(), path);
}

std::optional<Format> TypeRules::match(const std::string& tensor) const {
  return match(std::vector<std::string>{tensor});
}

std::optional<Format> TypeRules::match(const std::vector<std::string>& names) const {
  for (const auto& r : rules_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(r->code, nullptr);
    bool hit = false;
    for (const std::string& n : names) {
      hit = hit || pcre2_match(r->code, reinterpret_cast<PCRE2_SPTR>(n.data()), n.size(), 0, 0, md,
                               nullptr) >= 0;
    }
    pcre2_match_data_free(md);
    if (hit) return r->rule.format;
  }
  return std::nullopt;
}

std::vector<std::string> rule_names(const std::string& tensor, const Model& m) {
  if (tensor == "token_embd.weight" && m.config.tied_output) return {tensor, "output.weight"};
  return {tensor};
}

size_t TypeRules::size() const {
  return rules_.size();
}
const TypeRule& TypeRules::rule(size_t i) const {
  return rules_.at(i)->rule;
}

std::map<std::string, Format> apply_rules(const TypeRules& rules, const Model& m) {
  std::map<std::string, Format> out;
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2) continue;
    if (const auto f = rules.match(rule_names(t.name, m))) out.emplace(t.name, *f);
  }
  return out;
}

uint64_t parse_size(const std::string& text) {
  const std::string s = trim(text);
  size_t used = 0;
  double v = -1;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = trim(s.substr(used));
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  const std::map<std::string, double> units = {{"", 1},
                                               {"B", 1},
                                               {"K", 1024.0},
                                               {"KIB", 1024.0},
                                               {"KB", 1e3},
                                               {"M", 1048576.0},
                                               {"MIB", 1048576.0},
                                               {"MB", 1e6},
                                               {"G", 1073741824.0},
                                               {"GIB", 1073741824.0},
                                               {"GB", 1e9},
                                               {"TIB", 1099511627776.0},
                                               {"TB", 1e12}};
  const auto u = units.find(unit);
  if (used == 0 || u == units.end() || !(v > 0) || !std::isfinite(v) || v * u->second > 1e18) {
    throw Error("bad size", {.field = "--target-size",
                             .expected = "a positive size such as "
                                         "350KiB, 1.5GiB, 200MB or a byte count",
                             .found = text});
  }
  return uint64_t(std::floor(v * u->second));
}

// ---- The budget planner ----

namespace {

struct Relaxed {
  std::vector<size_t> choice;
  uint64_t bytes = 0;
  double dual = 0;  // Σ_i min_j (cost_ij + λ bytes_ij)
};

// Each tensor's argmin of cost + λ·bytes (ties: fewer bytes).
Relaxed relax(const std::vector<TensorCandidates>& ts, double lambda) {
  Relaxed r;
  for (const auto& t : ts) {
    size_t best = 0;
    double bv = std::numeric_limits<double>::infinity();
    for (size_t j = 0; j < t.options.size(); ++j) {
      const Candidate& c = t.options[j];
      const double v = c.cost + lambda * double(c.bytes);
      if (v < bv || (v == bv && c.bytes < t.options[best].bytes)) bv = v, best = j;
    }
    r.choice.push_back(best);
    r.bytes += t.options[best].bytes;
    r.dual += bv;
  }
  return r;
}

struct Move {
  size_t i = 0, j = 0;
  int64_t dbytes = 0;
  double dcost = 0;
};

// Spends leftover budget: repeatedly the upgrade that fits with the largest cost reduction per
// byte (a byte-free improvement first). Returns the moves made.
int64_t greedy_fill(const std::vector<TensorCandidates>& ts, BudgetSolution& s, uint64_t budget) {
  int64_t moves = 0;
  for (;;) {
    const int64_t left = int64_t(budget) - int64_t(s.bytes);
    std::optional<Move> best;
    double best_score = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      const Candidate& cur = ts[i].options[s.choice[i]];
      for (size_t j = 0; j < ts[i].options.size(); ++j) {
        const Candidate& c = ts[i].options[j];
        const int64_t db = int64_t(c.bytes) - int64_t(cur.bytes);
        const double dc = c.cost - cur.cost;
        if (dc >= 0 || db > left) continue;
        const double score = db <= 0 ? std::numeric_limits<double>::infinity() : -dc / double(db);
        if (!best || score > best_score) best = Move{i, j, db, dc}, best_score = score;
      }
    }
    if (!best) return moves;
    s.choice[best->i] = best->j;
    s.bytes = uint64_t(int64_t(s.bytes) + best->dbytes);
    s.cost += best->dcost;
    ++moves;
  }
}

// One exchange: change two tensors at once (typically one up, another down to pay for it) when
// that lowers the cost within budget; the best such pair. Moves sorted by bytes with prefix
// minima of the cost change (the best two, from different tensors) find each upgrade's best
// partner by binary search: O(M log M) for M moves. Returns false when no pair improves.
bool best_exchange(const std::vector<TensorCandidates>& ts, BudgetSolution& s, uint64_t budget) {
  std::vector<Move> moves;
  for (size_t i = 0; i < ts.size(); ++i) {
    const Candidate& cur = ts[i].options[s.choice[i]];
    for (size_t j = 0; j < ts[i].options.size(); ++j) {
      if (j == s.choice[i]) continue;
      const Candidate& c = ts[i].options[j];
      moves.push_back({i, j, int64_t(c.bytes) - int64_t(cur.bytes), c.cost - cur.cost});
    }
  }
  std::sort(moves.begin(), moves.end(),
            [](const Move& a, const Move& b) { return a.dbytes < b.dbytes; });
  // best[k], second[k]: indices of the two lowest-dcost moves among moves[0..k], of different
  // tensors (second = npos when all are of one tensor).
  constexpr size_t npos = size_t(-1);
  std::vector<size_t> best(moves.size()), second(moves.size());
  for (size_t k = 0; k < moves.size(); ++k) {
    size_t b1 = k > 0 ? best[k - 1] : npos, b2 = k > 0 ? second[k - 1] : npos;
    if (b1 == npos || moves[k].dcost < moves[b1].dcost) {
      if (b1 != npos && moves[b1].i != moves[k].i) b2 = b1;
      b1 = k;
    } else if (moves[k].i != moves[b1].i && (b2 == npos || moves[k].dcost < moves[b2].dcost)) {
      b2 = k;
    }
    best[k] = b1, second[k] = b2;
  }
  const int64_t left = int64_t(budget) - int64_t(s.bytes);
  const double eps = 1e-12 * std::max(1.0, std::fabs(s.cost));
  std::optional<std::pair<size_t, size_t>> pick;
  double pick_gain = eps;
  for (size_t a = 0; a < moves.size(); ++a) {
    if (moves[a].dbytes <= 0) continue;  // a: the upgrade, b: the move that pays for it
    const int64_t room = left - moves[a].dbytes;
    const auto end = std::upper_bound(moves.begin(), moves.end(), room,
                                      [](int64_t r, const Move& m) { return r < m.dbytes; });
    if (end == moves.begin()) continue;
    const size_t k = size_t(end - moves.begin()) - 1;
    const size_t b = moves[best[k]].i != moves[a].i ? best[k] : second[k];
    if (b == npos) continue;
    const double gain = -(moves[a].dcost + moves[b].dcost);
    if (gain > pick_gain) pick_gain = gain, pick = {a, b};
  }
  if (!pick) return false;
  for (const size_t k : {pick->first, pick->second}) {
    s.choice[moves[k].i] = moves[k].j;
    s.bytes = uint64_t(int64_t(s.bytes) + moves[k].dbytes);
    s.cost += moves[k].dcost;
  }
  return true;
}

// The exact repair: dynamic programming over the bytes each tensor spends above its smallest
// option, in units of the gcd of those amounts (exact), or -- when that makes more than
// kMaxStates states (fewer for very many tensors) -- of slack / kMaxStates bytes with every
// option's amount rounded up (never over budget, within one unit per tensor of exact).
// Time O(states x Σ options).
std::vector<size_t> dp_solve(const std::vector<TensorCandidates>& ts, uint64_t budget,
                             bool& exact) {
  constexpr uint64_t kMaxStates = uint64_t(1) << 15;
  std::vector<uint64_t> low;
  uint64_t g = 0, used = 0;
  for (const auto& t : ts) {
    uint64_t lo = std::numeric_limits<uint64_t>::max();
    for (const auto& o : t.options) lo = std::min(lo, o.bytes);
    for (const auto& o : t.options) g = std::gcd(g, o.bytes - lo);
    low.push_back(lo), used += lo;
  }
  const uint64_t slack = budget - used;
  uint64_t unit = std::max<uint64_t>(g, 1);
  // The choice table holds tensors x states entries: at most 2^26 (128 MiB).
  const uint64_t max_states = std::max<uint64_t>(
      2, std::min<uint64_t>(kMaxStates, (uint64_t(1) << 26) / std::max<size_t>(ts.size(), 1)));
  exact = slack / unit < max_states;
  if (!exact) unit = std::max(unit, (slack + max_states - 2) / (max_states - 1));
  const size_t states = size_t(slack / unit) + 1;
  std::vector<double> cur(states, INFINITY), next(states);
  cur[0] = 0;
  std::vector<uint16_t> pick(ts.size() * states);
  for (size_t i = 0; i < ts.size(); ++i) {
    std::fill(next.begin(), next.end(), INFINITY);
    for (size_t j = 0; j < ts[i].options.size(); ++j) {
      const uint64_t w = (ts[i].options[j].bytes - low[i] + unit - 1) / unit;
      const double c = ts[i].options[j].cost;
      for (size_t b = 0; b + w < states; ++b) {
        if (cur[b] + c < next[b + w])
          next[b + w] = cur[b] + c, pick[i * states + b + w] = uint16_t(j);
      }
    }
    std::swap(cur, next);
  }
  size_t b = size_t(std::min_element(cur.begin(), cur.end()) - cur.begin());
  std::vector<size_t> choice(ts.size());
  for (size_t i = ts.size(); i-- > 0;) {
    choice[i] = pick[i * states + b];
    b -= size_t((ts[i].options[choice[i]].bytes - low[i] + unit - 1) / unit);
  }
  return choice;
}

// Spends what a solution leaves of the budget: greedy upgrades, then pairwise exchanges.
void polish(const std::vector<TensorCandidates>& ts, BudgetSolution& s, uint64_t budget) {
  auto resum = [&] {  // no drift from the incremental updates
    s.cost = 0, s.bytes = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      s.cost += ts[i].options[s.choice[i]].cost, s.bytes += ts[i].options[s.choice[i]].bytes;
    }
  };
  resum();
  s.repair_moves += greedy_fill(ts, s, budget);
  for (int it = 0; it < 64 && best_exchange(ts, s, budget); ++it) {
    s.repair_moves += 1 + greedy_fill(ts, s, budget);
  }
  resum();
}

}  // namespace

BudgetSolution solve_budget(const std::vector<TensorCandidates>& ts, uint64_t budget) {
  uint64_t min_bytes = 0;
  double max_slope = 0;  // beyond this λ every tensor takes its smallest option
  for (const auto& t : ts) {
    LOWBIT_CHECK(!t.options.empty() && t.options.size() < 65536, "solve_budget: candidates");
    uint64_t lo = std::numeric_limits<uint64_t>::max();
    for (const auto& a : t.options) {
      lo = std::min(lo, a.bytes);
      for (const auto& b : t.options) {
        if (a.bytes > b.bytes)
          max_slope = std::max(max_slope, (b.cost - a.cost) / double(a.bytes - b.bytes));
      }
    }
    min_bytes += lo;
  }
  if (min_bytes > budget) {
    throw Error("the size budget is below the smallest candidate formats",
                {.field = "budget",
                 .expected = ">= " + std::to_string(min_bytes) + " bytes of weight matrices",
                 .found = std::to_string(budget) + " bytes"});
  }
  // Lagrangian relaxation: bisection on λ for the cheapest multiplier whose per-tensor argmins
  // fit the budget.
  Relaxed r = relax(ts, 0.0);
  double lo = 0, hi = 0;
  if (r.bytes > budget) {
    hi = 2 * max_slope + 1e-300;
    for (int it = 0; it < 200 && hi > lo * (1 + 1e-15); ++it) {
      const double mid = 0.5 * (lo + hi);
      (relax(ts, mid).bytes > budget ? lo : hi) = mid;
    }
    r = relax(ts, hi);
  }
  BudgetSolution s;
  s.choice = r.choice, s.lambda = hi;
  // Weak duality: for any λ >= 0, Σ min(cost + λ bytes) - λ·budget bounds the optimum below.
  s.lower_bound = std::max(r.dual - hi * double(budget), relax(ts, lo).dual - lo * double(budget));
  polish(ts, s, budget);
  // The relaxation's solution lies on each tensor's convex hull and can leave budget unspent
  // that no single move uses well: the exact repair, polished the same way; the better wins.
  BudgetSolution d = s;
  d.choice = dp_solve(ts, budget, d.exact);
  polish(ts, d, budget);
  if (d.cost < s.cost || (d.cost == s.cost && d.exact)) std::swap(s, d);
  if (s.exact) s.lower_bound = s.cost;
  s.lower_bound = std::min(s.lower_bound, s.cost);
  return s;
}

// ---- Plan files ----

uint64_t PlanFile::total_bytes() const {
  uint64_t b = 0;
  for (const auto& e : tensors) b += e.bytes;
  return b;
}

int64_t PlanFile::total_params() const {
  int64_t p = 0;
  for (const auto& e : tensors) p += e.params;
  return p;
}

double PlanFile::bits_per_weight() const {
  const int64_t p = total_params();
  return p ? 8.0 * double(total_bytes()) / double(p) : 0.0;
}

bool PlanFile::llama_cpp_loadable() const {
  return std::all_of(tensors.begin(), tensors.end(),
                     [](const PlanEntry& e) { return e.format.is_ggml_type(); });
}

void PlanFile::save(const std::string& path) const {
  Json j;
  j["lowbit_plan"] = 1;
  j["model"] = model, j["method"] = method, j["sensitivity"] = sensitivity;
  j["command"] = command;
  if (target_bpw) j["target_bits_per_weight"] = *target_bpw;
  j["budget_bytes"] = budget_bytes;
  j["bytes"] = total_bytes(), j["parameters"] = total_params();
  j["bits_per_weight"] = bits_per_weight();
  j["estimated_cost"] = estimated_cost, j["lower_bound"] = lower_bound;
  j["llama_cpp_loadable"] = llama_cpp_loadable();
  if (!check.empty()) {
    Json c = Json::object();
    for (const auto& [what, kld] : check) c[what] = kld;
    j["check_kld"] = c, j["check_kept"] = check_kept;
  }
  j["tensors"] = Json::array();
  for (const auto& e : tensors) {
    Json t = {{"name", e.name},
              {"format", e.format.name()},
              {"parameters", e.params},
              {"bytes", e.bytes}};
    if (e.cost) t["cost"] = *e.cost;
    j["tensors"].push_back(t);
  }
  const std::string text = j.dump(1) + "\n";
  OutputFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

PlanFile PlanFile::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the plan", {.file = path, .field = "--plan"});
  Json j;
  try {
    j = Json::parse(f);
  } catch (const Json::exception& e) {
    throw Error("the plan is not valid JSON", {.file = path, .found = e.what()});
  }
  PlanFile p;
  try {
    if (!j.is_object() || !j.contains("tensors") || !j["tensors"].is_array()) {
      throw Error(
          "not a lowbit plan",
          {.file = path, .field = "tensors", .expected = "an object with a \"tensors\" array"});
    }
    p.model = j.value("model", ""), p.method = j.value("method", "");
    p.sensitivity = j.value("sensitivity", "");
    if (j.contains("target_bits_per_weight"))
      p.target_bpw = j["target_bits_per_weight"].get<double>();
    p.budget_bytes = j.value("budget_bytes", uint64_t(0));
    p.estimated_cost = j.value("estimated_cost", 0.0), p.lower_bound = j.value("lower_bound", 0.0);
    for (const auto& t : j["tensors"]) {
      const std::string name = t.at("name").get<std::string>();
      const std::string fmt = t.at("format").get<std::string>();
      const std::optional<Format> fo = Format::find(fmt);
      if (!fo) {
        throw Error("unknown format in the plan", {.file = path,
                                                   .field = name,
                                                   .expected = "a format name (lowbit formats)",
                                                   .found = fmt});
      }
      PlanEntry e{name, *fo, t.value("parameters", int64_t(0)), t.value("bytes", uint64_t(0)), {}};
      if (t.contains("cost")) e.cost = t["cost"].get<double>();
      p.tensors.push_back(e);
    }
  } catch (const Json::exception& e) {
    throw Error("malformed plan", {.file = path, .found = e.what()});
  }
  return p;
}

std::map<std::string, Format> plan_choices(const PlanFile& p, const Model& m,
                                           const std::string& path) {
  std::map<std::string, Format> named;
  for (const auto& e : p.tensors) {
    if (!m.find(e.name)) {
      throw Error("the plan names a tensor the model does not have",
                  {.file = path, .field = e.name, .expected = "a plan made for this model"});
    }
    named.insert_or_assign(e.name, e.format);
  }
  std::map<std::string, Format> out;
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2) continue;
    const auto it = named.find(t.name);
    if (it == named.end()) {
      throw Error("the plan lacks a weight matrix of the model",
                  {.file = path, .field = t.name, .expected = "a format for every weight matrix"});
    }
    if (!it->second.can_tile(t.row_length()) || it->second.info().activation_only) {
      throw Error(
          "the plan's format cannot store this tensor",
          {.file = path,
           .field = t.name,
           .expected = "a weight format that tiles rows of " + std::to_string(t.row_length()),
           .found = it->second.name()});
    }
    out.emplace(t.name, it->second);
  }
  return out;
}

Format dominant_format(const std::vector<TensorPlan>& plan) {
  std::map<std::string, std::pair<int64_t, Format>> by;
  for (const auto& p : plan) {
    auto& e = by.try_emplace(p.to.name(), 0, p.to).first->second;
    e.first += p.params;
  }
  Format best;
  int64_t n = -1;
  for (const auto& [name, e] : by) {
    if (e.first > n) n = e.first, best = e.second;
  }
  return best;
}

}  // namespace lowbit
