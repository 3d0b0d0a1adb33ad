// Mixed precision: which format each weight matrix gets. Three parts:
//  - rules `REGEX = TYPE` (--tensor-type, recipe files): PCRE2 patterns searched (unanchored) in
//    GGUF tensor names, first match wins; they apply to weight matrices only (norms stay F32);
//    a tied token embedding answers to "output.weight" too;
//  - the budget planner: a multiple-choice knapsack (one candidate per tensor, minimise summed
//    cost under a byte budget) solved by Lagrangian relaxation (its solution and a lower bound),
//    then repaired: a dynamic program over the bytes (exact on the bytes' gcd grid, else on a
//    conservative coarse grid) and greedy upgrades / pairwise exchanges spend what is left;
//  - plan files (JSON: tensor -> format) that repeat a plan exactly.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"
#include "quant/quantize.h"

namespace lowbit {

struct TypeRule {
  std::string pattern;  // PCRE2 syntax
  Format format;
  std::string origin;  // "--tensor-type" or "FILE:LINE", for messages
};

// An ordered list of rules; the first whose pattern occurs in a tensor's name decides.
class TypeRules {
 public:
  TypeRules();
  ~TypeRules();
  TypeRules(TypeRules&&) noexcept;
  TypeRules& operator=(TypeRules&&) noexcept;

  // Compiles the pattern; throws Error (naming `origin`) on a bad regex or an activation format.
  void add(const std::string& pattern, const Format& f, const std::string& origin);
  // "REGEX=TYPE" as --tensor-type takes it (split at the last '=').
  void add_argument(const std::string& arg);
  // A recipe: lines `REGEX = TYPE`; '#' starts a comment; blank lines are ignored. `origin` is
  // the file name errors quote (with the line number).
  void add_recipe_text(const std::string& text, const std::string& origin);
  void add_recipe_file(const std::string& path);

  std::optional<Format> match(const std::string& tensor) const;
  // The first rule matching any of the names (see rule_names).
  std::optional<Format> match(const std::vector<std::string>& names) const;
  size_t size() const;
  bool empty() const { return size() == 0; }
  const TypeRule& rule(size_t i) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> rules_;
};

// The names rules see for a tensor: its own; a tied token embedding (no output.weight) is also
// the output head, so it answers to "output.weight" too.
std::vector<std::string> rule_names(const std::string& tensor, const Model& m);

// The rules applied to m's weight matrices (2-D tensors) that some rule matches: name -> format.
std::map<std::string, Format> apply_rules(const TypeRules& rules, const Model& m);

// "350KiB", "1.5GiB", "200MB", "123456" (bytes). KiB/MiB/GiB are powers of 1024, kB/MB/GB of
// 1000. Throws Error.
uint64_t parse_size(const std::string& text);

// ---- The budget planner ----

struct Candidate {
  Format format;
  uint64_t bytes = 0;  // stored bytes of the tensor in this format
  double cost = 0;     // estimated damage (e.g. KL divergence when only this tensor changes)
};

struct TensorCandidates {
  std::string name;
  int64_t params = 0;
  std::vector<Candidate> options;  // non-empty
};

struct BudgetSolution {
  std::vector<size_t> choice;  // per tensor: index into its options
  uint64_t bytes = 0;
  double cost = 0;
  double lower_bound = 0;    // Lagrangian dual bound: no choice within budget costs less
  double lambda = 0;         // the multiplier of the relaxation's feasible side
  int64_t repair_moves = 0;  // upgrades and exchanges applied after the relaxation
  bool exact = false;        // proven optimal (the dynamic program ran on exact bytes)
};

// Minimises Σ cost subject to Σ bytes <= budget_bytes. Throws Error when even the smallest
// options exceed the budget.
BudgetSolution solve_budget(const std::vector<TensorCandidates>& tensors, uint64_t budget_bytes);

// ---- Plans: the format of every tensor, as a file ----

struct PlanEntry {
  std::string name;
  Format format;
  int64_t params = 0;
  uint64_t bytes = 0;
  std::optional<double> cost;  // the planner's estimate, when planned
};

struct PlanFile {
  std::string model, method, sensitivity;
  std::string command;  // the command line that planned it (for lowbit report), "" = unknown
  std::optional<double> target_bpw;
  uint64_t budget_bytes = 0;  // 0 = none (a manual mix)
  double estimated_cost = 0, lower_bound = 0;
  // The planner's check against uniform files: (what, KLD on calibration text), and which was kept.
  std::vector<std::pair<std::string, double>> check;
  std::string check_kept;
  std::vector<PlanEntry> tensors;  // every tensor of the model, 1-D ones included

  uint64_t total_bytes() const;
  int64_t total_params() const;
  double bits_per_weight() const;
  bool llama_cpp_loadable() const;  // every format a GGUF (ggml) type
  void save(const std::string& path) const;
  static PlanFile load(const std::string& path);
};

// The plan as per-tensor choices for QuantizeOptions, checked against m: every weight matrix must
// be named with a format that tiles its rows, and no name may be unknown. Throws Error.
std::map<std::string, Format> plan_choices(const PlanFile& p, const Model& m,
                                           const std::string& path);

// The format covering most parameters among the matrices (what the file's metadata names).
Format dominant_format(const std::vector<TensorPlan>& plan);

}  // namespace lowbit
