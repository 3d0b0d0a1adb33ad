// The lowbit CLI's verbs. Each registers its subcommand, parses its options and calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace lowbit::cli {

// Registers a verb; the returned callback runs it (after parsing) and returns the exit code.
using Runner = std::function<int()>;
Runner add_formats(CLI::App& app);
Runner add_demo(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_calibrate(CLI::App& app);
Runner add_sensitivity(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_compare(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_bench(CLI::App& app);

}  // namespace lowbit::cli
