// lowbit: one verb per job. Exit codes: 0 success, 1 bad input or usage, 2 internal error.
#include <cstdio>
#include <exception>
#include <map>

#include "commands.h"
#include "lowbit/error.h"

namespace lowbit::cli {
namespace {
std::string g_command_line;
}
const std::string& command_line() {
  return g_command_line;
}
}  // namespace lowbit::cli

int main(int argc, char** argv) {
  // The command as typed (arguments with spaces or quotes single-quoted), for --json outputs.
  for (int i = 0; i < argc; ++i) {
    std::string a = i == 0 ? "lowbit" : argv[i];
    if (a.empty() || a.find_first_of(" \t'\"$`\\") != std::string::npos) {
      std::string q = "'";
      for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      a = q + "'";
    }
    lowbit::cli::g_command_line += (i ? " " : "") + a;
  }
  CLI::App app{
      "lowbit: make large language models small and fast (quantize, convert, run, "
      "measure)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lowbit 0.1.0");
  std::map<CLI::App*, lowbit::cli::Runner> runners;
  auto add = [&](lowbit::cli::Runner (*reg)(CLI::App&)) {
    const size_t before = app.get_subcommands({}).size();
    auto r = reg(app);
    runners[app.get_subcommands({})[before]] = std::move(r);
  };
  add(lowbit::cli::add_formats);
  add(lowbit::cli::add_convert);
  add(lowbit::cli::add_inspect);
  add(lowbit::cli::add_quantize);
  add(lowbit::cli::add_calibrate);
  add(lowbit::cli::add_sensitivity);
  add(lowbit::cli::add_run);
  add(lowbit::cli::add_perplexity);
  add(lowbit::cli::add_compare);
  add(lowbit::cli::add_demo);
  add(lowbit::cli::add_synth);
  add(lowbit::cli::add_bench);
  add(lowbit::cli::add_train);
  add(lowbit::cli::add_finetune);
  add(lowbit::cli::add_merge);
  add(lowbit::cli::add_report);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 1;
  }
  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub)();
    return 1;
  } catch (const lowbit::Error& e) {
    std::fprintf(stderr, "lowbit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lowbit: internal error: %s\n", e.what());
    return 2;
  }
}
