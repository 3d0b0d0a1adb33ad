// `lowbit report INPUT... -o REPORT.html [--title T]`: lowbit's JSON outputs (compare --json,
// sensitivity files, plans, bench --json, training logs, reference rows) as one self-contained
// HTML page of Vega-Lite charts, each with its data table and command (eval/report.h).
#include <fmt/format.h>

#include <filesystem>

#include "commands.h"
#include "eval/report.h"
#include "lowbit/error.h"
#include "lowbit/output_file.h"

namespace lowbit::cli {

std::string_view vega_js();  // report_assets.cpp (generated)
std::string_view vega_lite_js();

// The page for `inputs` at `out`; returns the number of bytes written.
uint64_t write_report(const std::vector<std::string>& inputs, const std::string& out,
                      const std::string& title) {
  if (vega_js().empty() || vega_lite_js().empty()) {
    throw Error(
        "this lowbit was built without Vega, the plotting library reports embed: run "
        "`make deps` (npm installs it into report/node_modules), then build again");
  }
  const std::string html = build_report(inputs, {.title = title}, vega_js(), vega_lite_js());
  OutputFile f(out, inputs);
  f.write(html.data(), html.size());
  f.commit();
  return html.size();
}

Runner add_report(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "report", "Draw lowbit's JSON outputs as one self-contained HTML page of charts");
  struct Opts {
    std::vector<std::string> inputs;
    std::string out, title = "lowbit report";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("inputs", o->inputs,
                  "compare --json, sensitivity / .sens.json, .plan.json, bench --json, "
                  "train/finetune --json logs, reference rows ({\"lowbit_reference\": 1, "
                  "\"label\": ..., \"rows\": [{\"name\", \"bits_per_weight\", \"kld\", \"ppl\"}]})")
      ->required();
  cmd->add_option("-o,--output", o->out, "The HTML file")->required();
  cmd->add_option("--title", o->title, "Page title")->capture_default_str();
  return [o] {
    const uint64_t bytes = write_report(o->inputs, o->out, o->title);
    fmt::print("report: {} inputs -> {} ({:.1f} KiB)\n", o->inputs.size(), o->out,
               double(bytes) / 1024);
    return 0;
  };
}

}  // namespace lowbit::cli
