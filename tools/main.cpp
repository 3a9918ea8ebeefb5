// occam: the command line. Thin: it parses flags and calls the library.
#include <fmt/core.h>

#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "cli.hpp"
#include "mpi.hpp"

namespace {

const char* kUsage = R"(occam - meta-learn the inductive bias of a learning circuit

usage: occam SUBCOMMAND [flags]        (occam SUBCOMMAND --help for its flags)

subcommands:
  run        run an experiment (a preset or one composed from flags)
  presets    list the experiment presets, one line each
  analyse    recompute summary.json from a run directory's probe.csv
  plot       draw a run directory's figures with gnuplot
  reproduce  run every preset for seeds 1, 2, 3 and check the medians against the targets
  check      check a finished run's summary.json: finite values, its preset's targets
  bench      time fixed workloads (occam bench --workload tape)
  gradcheck  check every autodiff op's first and second derivatives against finite differences

flags:
  -h, --help     this help
  --version      the version
)";

}  // namespace

int main(int argc, char** argv) {
    using occam::cli::printable;  // every message that quotes input is made one printable line
    if (argc < 2) {
        fmt::print(stderr, "{}", kUsage);
        return occam::cli::kUsageError;
    }
    const std::string sub = argv[1];
    if (sub == "-h" || sub == "--help" || sub == "help") {
        fmt::print("{}", kUsage);
        return 0;
    }
    if (sub == "--version") {
        fmt::print("occam {}\n", OCCAM_VERSION);
        return 0;
    }
    // Under mpirun every process runs this same command; mpi.hpp says which part is its own.
    occam::cli::mpi::Session mpi_session(argc, argv);
    namespace mpi = occam::cli::mpi;
    // The subcommand sees its own name as argv[0], so its --help reads "occam gradcheck ...".
    std::string name = "occam " + sub;
    argv[1] = name.data();
    // A failure that may be one process's own (a run's error, memory) names the process and
    // ends the whole job: the others would wait for it forever in their next collective.
    const std::string who = mpi::size() > 1 ? fmt::format("{} (process {} of {})", name, mpi::rank(), mpi::size()) : name;
    try {
        if (sub == "gradcheck") return occam::cli::gradcheck(argc - 1, argv + 1);
        if (sub == "bench") return occam::cli::bench(argc - 1, argv + 1);
        if (sub == "run") return occam::cli::run(argc - 1, argv + 1);
        if (sub == "presets") return occam::cli::presets(argc - 1, argv + 1);
        if (sub == "analyse" || sub == "analyze") return occam::cli::analyse(argc - 1, argv + 1);
        if (sub == "plot") return occam::cli::plot(argc - 1, argv + 1);
        if (sub == "reproduce") return occam::cli::reproduce(argc - 1, argv + 1);
        if (sub == "check") return occam::cli::check(argc - 1, argv + 1);
        fmt::print(stderr, "occam: unknown subcommand '{}' (see occam --help)\n", printable(sub));
        return occam::cli::kUsageError;
    } catch (const cxxopts::exceptions::exception& e) {
        // Every process read the same flags and stops here before any collective: one says so.
        if (mpi::rank() == 0) fmt::print(stderr, "{}: {} (see {} --help)\n", name, printable(e.what()), name);
        return occam::cli::kUsageError;
    } catch (const std::bad_alloc&) {
        // The last resort: validate() refuses the sizes it can foresee, with the flag's name.
        fmt::print(stderr,
                   "{}: out of memory (the run asked for more memory than this machine could give; try smaller "
                   "sizes: --train, --test, --features, --meta-hidden, --probe, --population)\n",
                   who);
        if (mpi::size() > 1) mpi::abort_all(1);
        return 1;
    } catch (const std::exception& e) {
        fmt::print(stderr, "{}: error: {}\n", who, printable(e.what()));
        if (mpi::size() > 1) mpi::abort_all(1);
        return 1;
    }
}
