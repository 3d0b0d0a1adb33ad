// `lowbit report`: lowbit's JSON outputs drawn as one self-contained HTML page. Each input is
// recognised by its version key -- `lowbit_compare` (compare --json), `lowbit_sensitivity`
// (sensitivity -o), `lowbit_plan` (a mix's .plan.json), `lowbit_bench` (bench --json),
// `lowbit_train_log` (the JSON lines of train / finetune --json), `lowbit_reference` (rows measured
// elsewhere, e.g. llama.cpp's, drawn beside lowbit's) -- and drawn as suits it, as a Vega-Lite
// chart with its data as a table underneath and the command that produced it:
//   compare      bits per weight against KLD (log scale) and against PPL, one point per file,
//                methods and mixes told apart, the Pareto front drawn;
//   sensitivity  a heat map of tensor x format cost, with a plan's choice per tensor marked;
//   bench        generation tokens/s per file against the same run's bandwidth limit;
//   train log    training and validation loss against step.
// The page carries Vega and Vega-Lite inline (no network needed to open it) and, once every chart
// has rendered, writes the number of marks of each chart and any script error into the element
// #lowbit-status (what the browser test reads).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lowbit {

struct ReportOptions {
  std::string title = "lowbit report";
};

// The page for the JSON files at `paths`. Throws Error naming the file when one is not JSON, not
// one of lowbit's outputs, or from another version of them.
std::string build_report(const std::vector<std::string>& paths, const ReportOptions& o,
                         std::string_view vega_js, std::string_view vega_lite_js);

}  // namespace lowbit
