// Figures with gnuplot: the labelling beside the learner's fit, and the loss curves, as PNG
// and SVG. The gnuplot script is kept in the run directory so a user can restyle it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace occam::cli {

bool gnuplot_available();
/// True when gnuplot is missing; then the first call in this process prints one warning
/// ("COMMAND: warning: gnuplot not found, no figures"), later calls print nothing.
bool warn_once_without_gnuplot(const std::string& command);
/// Writes plot.gp into `dir` and runs gnuplot there; returns the figure files written. Throws
/// when gnuplot fails or a figure did not come out whole (and removes the broken figures).
std::vector<std::filesystem::path> plot_run(const std::filesystem::path& dir);
/// Draws `dir`'s figures with `draw` (plot_run or plot_sweep) as part of a run: a missing gnuplot
/// is one warning (`command`: warning: ...), a failure an error saying the results are written.
void draw_run_figures(const std::filesystem::path& dir, bool quiet, const std::string& command,
                      std::vector<std::filesystem::path> (*draw)(const std::filesystem::path&));
/// A sweep's figure (sweep.png/svg in `dir`): one row per run. Each row shows the run's
/// functions as maps (sphere or plane inputs), or for other vector inputs f1 over the plane of
/// the two group means and against each input.
std::vector<std::filesystem::path> plot_sweep(const std::filesystem::path& dir);

}  // namespace occam::cli
