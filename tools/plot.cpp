#include "plot.hpp"

#include <fmt/core.h>

#include <fcntl.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>

#include "cli.hpp"
#include "experiment/inputs.hpp"
#include "experiment/learner_spec.hpp"
#include "run_files.hpp"
#include "summary.hpp"

namespace occam::cli {

bool gnuplot_available() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

bool warn_once_without_gnuplot(const std::string& command) {
    static std::atomic<bool> warned{false};
    if (gnuplot_available()) return false;
    if (!warned.exchange(true))
        fmt::print(stderr, "{}: warning: gnuplot not found, no figures (make demo installs it)\n", command);
    return true;
}

void draw_run_figures(const fs::path& dir, bool quiet, const std::string& command,
                      std::vector<fs::path> (*draw)(const fs::path&)) {
    if (warn_once_without_gnuplot(command)) return;
    try {
        const auto files = draw(dir);
        if (!quiet) fmt::print("figure: {}\n", files.front().string());
    } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format("the results are in {}, but the figures failed: {}", dir.string(), e.what()));
    }
}

namespace {

/// Runs `gnuplot SCRIPT` in `dir` (its stderr to plot.log) and checks what it drew: gnuplot can
/// exit 0 after failing to write a file (a full disk), so each figure must exist and end as its
/// format ends. A figure that did not come out whole is removed, never left half-written.
void run_gnuplot(const fs::path& dir, const std::string& script, const std::vector<fs::path>& files) {
    for (const auto& f : files) fs::remove(f);  // an old figure must not pass for a new one
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    // chdir in the child: the directory's name reaches no shell, whatever characters it holds.
    posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "plot.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const char* argv[] = {"gnuplot", script.c_str(), nullptr};
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, "gnuplot", &actions, nullptr, const_cast<char**>(argv), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error(std::string("cannot start gnuplot: ") + std::strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    auto first_line = [&] {
        std::ifstream in(dir / "plot.log");
        std::string line;
        std::getline(in, line);
        return line.empty() ? std::string() : ": " + line;
    };
    const auto remove_all_figures = [&] {
        for (const auto& f : files) fs::remove(f);
    };
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        remove_all_figures();
        throw std::runtime_error(fmt::format("gnuplot failed{} (see {})", first_line(), (dir / "plot.log").string()));
    }
    for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        static const std::string png_end("IEND\xAE\x42\x60\x82", 8);
        const bool whole = f.extension() == ".png" ? bytes.size() > 8 && bytes.compare(0, 4, "\x89PNG") == 0 &&
                                                         bytes.size() >= png_end.size() &&
                                                         bytes.compare(bytes.size() - 8, 8, png_end) == 0
                                                   : bytes.find("</svg>") != std::string::npos;
        if (!whole) {
            remove_all_figures();
            throw std::runtime_error(fmt::format("gnuplot did not write {} whole (a full disk?){}", f.string(), first_line()));
        }
    }
}

/// The coordinates of a labelling panel for the run's inputs: longitude/latitude on the
/// sphere, the plane for 2-D inputs, otherwise the first input against the label.
struct Axes {
    std::string using_xy, xlabel, ylabel;
    bool scatter_by_colour = true;
    std::string ranges;
};

Axes axes_for(const std::string& inputs, int dims) {
    if (inputs == "sphere:3")
        return {"(atan2(column('x1'),column('x0'))*180/pi):(asin(column('x2'))*180/pi)", "longitude (deg)",
                "latitude (deg)", true, "set xrange [-180:180]\nset yrange [-90:90]\nset xtics 90\nset ytics 45\n"};
    if (dims == 2) return {"(column('x0')):(column('x1'))", "x0", "x1", true, "set size ratio -1\n"};
    return {"(column('x0'))", "x0", "label", false, ""};
}

std::string labelling_script(const ProbeTable& probe, const experiment::Config& c, const nlohmann::json& summary,
                             const std::string& terminal, const std::string& file) {
    const auto names = function_names(probe);
    const Axes ax = axes_for(c.inputs, int(probe.x.cols()));
    auto has = [&](const std::string& col) {
        return std::find(probe.names.begin(), probe.names.end(), col) != probe.names.end();
    };
    // Panels: one function with its fit(s) side by side; a series as a grid of functions.
    struct Panel {
        std::string column, title;
    };
    std::vector<Panel> panels;
    for (std::size_t k = 0; k < names.size(); ++k) {
        const std::string f = names[k], n = f.substr(1);
        const auto& fj = summary["functions"][k];
        std::string title = f;
        if (fj.contains("dominant_degree")) title += fmt::format(", degree {}", fj["dominant_degree"].get<int>());
        if (fj.contains("test_mse")) title += fmt::format(", test MSE {:.3g}", fj["test_mse"].get<double>());
        panels.push_back({f, "meta-learner " + title});
        if (names.size() == 1 || has("n" + n)) {
            if (has("g" + n))
                panels.push_back({"g" + n, fmt::format("{} fit after {} points", has("n" + n) ? "chosen learner" : "learner", c.n_train)});
            if (has("n" + n))
                panels.push_back({"n" + n, fmt::format("neglected learner, test MSE {:.3g}",
                                                       fj.value("neglected_test_mse", 0.0))});
        }
    }
    const int cols = names.size() == 1 ? int(panels.size()) : (has("n1") ? 3 : std::min<int>(3, int(panels.size())));
    const int rows = (int(panels.size()) + cols - 1) / cols;
    std::string s;
    s += fmt::format("reset\nset terminal {} size {},{}\nset output '{}'\n", terminal, 550 * cols, 420 * rows, file);
    s += "set datafile separator ','\nset datafile columnheaders\nset palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\n";
    s += "set cbrange [-1.2:1.2]\nunset key\n";
    s += fmt::format("set multiplot layout {},{} title '{}'\n", rows, cols, c.preset.empty() ? c.inputs : c.preset);
    s += fmt::format("set xlabel '{}'\nset ylabel '{}'\n{}", ax.xlabel, ax.ylabel, ax.ranges);
    for (const Panel& p : panels) {
        s += fmt::format("set title '{}'\n", p.title);
        if (ax.scatter_by_colour)
            s += fmt::format("plot 'probe.csv' using {}:(column('{}')) with points pt 7 ps 0.5 lc palette\n", ax.using_xy,
                             p.column);
        else
            s += fmt::format("plot 'probe.csv' using {}:(column('{}')) with points pt 7 ps 0.4\n", ax.using_xy, p.column);
    }
    s += "unset multiplot\n";
    return s;
}

/// For ipd inputs (Fig. 5): each function of the phase difference as a curve, the labels f_k
/// over the learner's fit g_k (and the neglected learner's n_k in the students game) at the probe
/// points, one panel per function, titled with its centred degree-1 share (the part linear in
/// the phase difference) and, when known, its test error over its label variance.
std::string ipd_labelling_script(const ProbeTable& probe, const experiment::Config& c, const nlohmann::json& summary,
                                 const std::string& terminal, const std::string& file) {
    const auto names = function_names(probe);
    auto has = [&](const std::string& col) {
        return std::find(probe.names.begin(), probe.names.end(), col) != probe.names.end();
    };
    const int cols = std::min<int>(3, int(names.size())), rows = (int(names.size()) + cols - 1) / cols;
    std::string s;
    s += fmt::format("reset\nset terminal {} size {},{}\nset output '{}'\n", terminal, std::max(700, 550 * cols),
                     420 * rows, file);
    s += "set datafile separator ','\nset datafile columnheaders\nset key bottom right font ',9'\n";
    s += fmt::format("set multiplot layout {},{} title '{}'\n", rows, cols, c.preset.empty() ? c.inputs : c.preset);
    // u = dphi / (pi/2), so the phase difference in degrees is 90 u.
    s += "set xlabel 'phase difference (deg)'\nset ylabel 'label'\nset xrange [-90:90]\nset xtics 45\n";
    const std::string x = "(column('x0')*90)";
    for (std::size_t k = 0; k < names.size(); ++k) {
        const std::string f = names[k], n = f.substr(1);
        const auto& fj = summary["functions"][k];
        std::string title = f;
        if (fj.contains("legendre_energy_centered") && fj["legendre_energy_centered"].size() > 1)
            title += fmt::format(", degree-1 share {:.2f}", fj["legendre_energy_centered"][1].get<double>());
        if (fj.contains("normalised_test_error"))
            title += fmt::format(", normalised test error {:.3g}", fj["normalised_test_error"].get<double>());
        s += fmt::format("set title '{}'\nplot ", title);
        // The fits first, so the labels' curve is drawn over them.
        if (has("g" + n))
            s += fmt::format("'probe.csv' using {}:(column('g{}')) with points pt 7 ps 0.3 lc rgb '#8a8a8a' title "
                             "'g{} ({}learner fit)', ",
                             x, n, n, has("n" + n) ? "chosen " : "");
        if (has("n" + n))
            s += fmt::format("'probe.csv' using {}:(column('n{}')) with points pt 7 ps 0.3 lc rgb '#2166ac' title "
                             "'n{} (neglected learner fit)', ",
                             x, n, n);
        s += fmt::format("'probe.csv' using {}:(column('{}')) smooth unique with lines lw 2 lc rgb '#b2182b' title "
                         "'{} (labels)'\n",
                         x, f, f);
    }
    s += "unset multiplot\n";
    return s;
}

/// For image inputs (Fig. 6): writes images.dat, the first 25 probe images (found again by their
/// class and position in their file), one gnuplot data block each; returns the images' height.
int write_probe_images(const std::filesystem::path& dir, const ProbeTable& probe, const experiment::Config& c,
                        int count) {
    const auto inputs = experiment::make_inputs(c.inputs, c.classes);
    const auto* images = dynamic_cast<const experiment::ImageInputs*>(inputs.get());
    if (!images) throw std::runtime_error("inputs '" + c.inputs + "' are not images");
    const experiment::ImageSet& set = images->images();
    std::map<std::pair<int, int>, int> row_of;  // (class, index in its file) -> row of the set
    for (std::size_t r = 0; r < set.labels.size(); ++r) row_of[{set.labels[r], set.index[r]}] = int(r);
    std::string s;
    for (int k = 0; k < count; ++k) {
        const auto found = row_of.find({int(probe.x(k, 1)), int(probe.x(k, 0))});
        if (found == row_of.end())
            throw std::runtime_error(fmt::format("probe.csv row {}: no image {} of class {} in {}", k + 1,
                                                 int(probe.x(k, 0)), int(probe.x(k, 1)), c.inputs));
        for (int y = 0; y < set.rows; ++y) {
            for (int x = 0; x < set.cols; ++x)
                s += fmt::format("{}{:.4g}", x ? " " : "", set.pixels(found->second, y * set.cols + x));
            s += "\n";
        }
        s += "\n\n";  // two blank lines end a gnuplot data block (an `index`)
    }
    write_text(dir / "images.dat", s);
    return set.rows;
}

/// For image inputs: a 5 x 5 grid of probe images titled with their labels f1 (and class).
std::string images_script(const ProbeTable& probe, int count, int height, const std::string& terminal,
                          const std::string& file) {
    std::string s;
    s += fmt::format("reset\nset terminal {} size 1000,1080\nset output '{}'\n", terminal, file);
    s += "set palette gray\nunset colorbox\nunset key\nunset tics\nunset border\nset size ratio -1\n";
    s += fmt::format("set yrange [{}:-0.5]\n", height - 0.5);  // row 0 at the top
    s += "set multiplot layout 5,5 title 'probe images and their labels f1'\n";
    const Eigen::VectorXd f = probe.column("f1");
    for (int k = 0; k < count; ++k)
        s += fmt::format("set title 'f1 = {:.2f} (class {})' font ',10'\nplot 'images.dat' index {} matrix with image\n",
                         f(k), int(probe.x(k, 1)), k);
    s += "unset multiplot\n";
    return s;
}

/// For image inputs: each function's labels as a histogram per class (the paper's Fig. 6B).
std::string class_histogram_script(const ProbeTable& probe, const experiment::Config& c, const nlohmann::json& summary,
                                   const std::string& terminal, const std::string& file) {
    const auto names = function_names(probe);
    std::vector<int> classes;
    for (Eigen::Index i = 0; i < probe.x.rows(); ++i)
        if (std::find(classes.begin(), classes.end(), int(probe.x(i, 1))) == classes.end())
            classes.push_back(int(probe.x(i, 1)));
    std::sort(classes.begin(), classes.end());
    const int cols = std::min<int>(3, int(names.size())), rows = (int(names.size()) + cols - 1) / cols;
    static const char* colours[] = {"#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214", "#35978f"};
    std::string s;
    s += fmt::format("reset\nset terminal {} size {},{}\nset output '{}'\n", terminal, std::max(700, 550 * cols),
                     420 * rows, file);
    s += "set datafile separator ','\nset datafile columnheaders\nset key top center font ',9'\n";
    s += "set style fill transparent solid 0.5 noborder\nwidth = 0.05\nbin(x) = width * floor(x / width) + width / 2\n";
    s += fmt::format("set multiplot layout {},{} title '{}'\n", rows, cols, c.preset.empty() ? c.inputs : c.preset);
    s += "set xlabel 'label'\nset ylabel 'images'\n";
    for (std::size_t k = 0; k < names.size(); ++k) {
        const auto& fj = summary["functions"][k];
        std::string title = names[k];
        if (fj.contains("class_correlation"))
            title += fmt::format(", correlation with the class {:.3f}", fj["class_correlation"].get<double>());
        s += fmt::format("set title '{}'\nplot ", title);
        for (std::size_t j = 0; j < classes.size(); ++j)
            s += fmt::format("{}'probe.csv' using (bin(column('{}'))):(column('class') == {} ? 1 : 0) smooth frequency "
                             "with boxes lc rgb '{}' title 'class {}'",
                             j ? ", " : "", names[k], classes[j], colours[j % 6], classes[j]);
        s += "\n";
    }
    s += "unset multiplot\n";
    return s;
}

std::string loss_script(const std::string& terminal, const std::string& file) {
    return fmt::format(
        "reset\nset terminal {} size 800,450\nset output '{}'\nset datafile separator ','\nset datafile columnheaders\n"
        "set logscale y\nset xlabel 'meta-step'\nset ylabel 'loss term'\nset key top right\nset title 'meta-training'\n"
        "plot 'log.csv' using 'step':'loss' with lines lw 2 title 'meta-loss', "
        "'' using 'step':'mse' with lines title 'test MSE', "
        "'' using 'step':'divergence' with lines title 'label divergence'\n",
        terminal, file);
}

/// Text for a gnuplot title: its enhanced mode reads _ as a subscript.
std::string gnuplot_text(std::string s) {
    for (std::size_t at = 0; (at = s.find('_', at)) != std::string::npos; at += 2) s.insert(at, "\\");
    return s;
}

/// gnuplot's expression for the mean of a group of inputs.
std::string group_mean_expr(const std::vector<int>& g) {
    std::string e = "((";
    for (std::size_t k = 0; k < g.size(); ++k) e += fmt::format("{}column('x{}')", k ? "+" : "", g[k]);
    return e + fmt::format(")/{})", g.size());
}

/// For inputs of 3 or more dimensions (other than the sphere map): f1 against each input, one
/// panel per input, and with --groups, f1 over the plane of the group means (the Fig. 7 view:
/// is the labelling a function of the group means?).
std::string inputs_script(const ProbeTable& probe, const experiment::Config& c, const std::string& terminal,
                          const std::string& file) {
    const int dims = int(probe.x.cols());
    std::vector<std::vector<int>> groups;
    if (!c.groups.empty()) groups = experiment::parse_nested<int>(c.groups, "--groups");
    const bool plane = groups.size() == 2;
    const int panels = dims + (plane ? 1 : 0);
    std::string s;
    s += fmt::format("reset\nset terminal {} size {},420\nset output '{}'\n", terminal, 380 * panels, file);
    s += "set datafile separator ','\nset datafile columnheaders\nunset key\n";
    s += "set palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\nset cbrange [-1.2:1.2]\n";
    s += fmt::format("set multiplot layout 1,{} title '{}: f1 against each input'\n", panels,
                     c.preset.empty() ? c.inputs : c.preset);
    for (int d = 0; d < dims; ++d)
        s += fmt::format("set xlabel 'x{}'\nset ylabel 'f1'\nset title 'x{}'\n"
                         "plot 'probe.csv' using (column('x{}')):(column('f1')) with points pt 7 ps 0.3\n",
                         d, d, d);
    if (plane) {
        s += fmt::format("set xlabel 'mean of group 1'\nset ylabel 'mean of group 2'\nset title 'f1 over the group means'\n"
                         "plot 'probe.csv' using {}:{}:(column('f1')) with points pt 7 ps 0.4 lc palette\n",
                         group_mean_expr(groups[0]), group_mean_expr(groups[1]));
    }
    s += "unset multiplot\n";
    return s;
}

}  // namespace

std::vector<std::filesystem::path> plot_sweep(const std::filesystem::path& dir) {
    const nlohmann::json summary = read_json(dir / "summary.json");
    // Panels per row, as gnuplot commands; empty rows are never made.
    std::vector<std::vector<std::string>> rows;
    for (const auto& name_j : summary["order"]) {
        const std::string name = name_j.get<std::string>();
        const experiment::Config c = config_from_json(read_json(dir / name / "config.json"));
        const ProbeTable probe = read_probe(dir / name / "probe.csv");
        check_probe(probe, c, dir / name / "probe.csv");
        check_summary_functions(summary["runs"][name], c.functions, dir / "summary.json");
        const auto& fs = summary["runs"][name]["functions"];
        const std::string file = name + "/probe.csv";
        const std::string label = gnuplot_text(name);
        const Axes ax = axes_for(c.inputs, int(probe.x.cols()));
        std::vector<std::string> panels;
        if (ax.scatter_by_colour) {
            for (std::size_t k = 0; k < fs.size(); ++k) {
                std::string title = label + ": " + fs[k]["name"].get<std::string>();
                if (fs[k].contains("dominant_degree"))
                    title += fmt::format(", degree {}", fs[k]["dominant_degree"].get<int>());
                title += fmt::format(", std {:.2f}", fs[k]["label_std"].get<double>());
                panels.push_back(fmt::format(
                    "set title '{}'\nset xlabel '{}'\nset ylabel '{}'\n{}plot '{}' using {}:(column('f{}')) with points pt 7 ps 0.4 lc palette\n",
                    title, ax.xlabel, ax.ylabel, ax.ranges, file, ax.using_xy, k + 1));
            }
        } else {
            std::vector<std::vector<int>> groups;
            if (!c.groups.empty()) groups = experiment::parse_nested<int>(c.groups, "--groups");
            const auto& f1 = fs[0];
            if (groups.size() == 2)
                panels.push_back(fmt::format(
                    "set title '{}: f1 over the group means, R^2 {:.2f}'\nset xtics 0.4\nset xlabel 'mean of group 1'\n"
                    "set ylabel 'mean of group 2'\nplot '{}' using {}:{}:(column('f1')) with points pt 7 ps 0.4 lc palette\n",
                    label, f1.value("group_mean_r2", 0.0), file, group_mean_expr(groups[0]), group_mean_expr(groups[1])));
            for (int d = 0; d < int(probe.x.cols()); ++d)
                panels.push_back(fmt::format("set title '{}: f1 against x{}'\nset xlabel 'x{}'\nset ylabel 'f1'\n"
                                             "plot '{}' using (column('x{}')):(column('f1')) with points pt 7 ps 0.3\n",
                                             label, d, d, file, d));
        }
        rows.push_back(panels);
    }
    std::size_t cols = 1;
    for (const auto& r : rows) cols = std::max(cols, r.size());
    std::string script = "# occam sweep figure; run `gnuplot sweep.gp` in this directory to redraw it.\n";
    std::vector<std::filesystem::path> files;
    for (auto [terminal, ext] : {std::pair{"pngcairo", "png"}, std::pair{"svg", "svg"}}) {
        script += fmt::format("reset\nset terminal {} size {},{}\nset output 'sweep.{}'\n", terminal, 420 * cols,
                              340 * rows.size(), ext);
        script += "set datafile separator ','\nset datafile columnheaders\nunset key\n";
        script += "set palette defined (-1 '#2166ac', 0 '#f7f7f7', 1 '#b2182b')\nset cbrange [-1.2:1.2]\n";
        script += fmt::format("set multiplot layout {},{} title 'one run per value of {}'\n", rows.size(), cols,
                              gnuplot_text(summary["sweep"].get<std::string>()));
        for (const auto& r : rows) {
            for (const auto& p : r) script += p;
            for (std::size_t k = r.size(); k < cols; ++k) script += "set multiplot next\n";
        }
        script += "unset multiplot\n";
        files.push_back(dir / (std::string("sweep.") + ext));
    }
    write_text(dir / "sweep.gp", script);
    run_gnuplot(dir, "sweep.gp", files);
    return files;
}

std::vector<std::filesystem::path> plot_run(const std::filesystem::path& dir) {
    const experiment::Config c = config_from_json(read_json(dir / "config.json"));
    const ProbeTable probe = read_probe(dir / "probe.csv");
    check_probe(probe, c, dir / "probe.csv");
    const nlohmann::json summary = read_json(dir / "summary.json");
    check_summary_functions(summary, c.functions, dir / "summary.json");
    std::string script = "# occam figures; run `gnuplot plot.gp` in this directory to redraw them.\n";
    std::vector<std::filesystem::path> files;
    const bool has_log = std::filesystem::exists(dir / "log.csv") && std::filesystem::file_size(dir / "log.csv") > 40;
    const bool images = experiment::is_image_spec(c.inputs);
    const int shown = int(std::min<Eigen::Index>(25, probe.x.rows()));
    int height = 0;
    if (images) height = write_probe_images(dir, probe, c, shown);
    for (auto [terminal, ext] : {std::pair{"pngcairo", "png"}, std::pair{"svg", "svg"}}) {
        if (images)
            script += class_histogram_script(probe, c, summary, terminal, std::string("labelling.") + ext);
        else
            script += experiment::is_ipd(c.inputs)
                          ? ipd_labelling_script(probe, c, summary, terminal, std::string("labelling.") + ext)
                          : labelling_script(probe, c, summary, terminal, std::string("labelling.") + ext);
        files.push_back(dir / (std::string("labelling.") + ext));
        if (images) {
            script += images_script(probe, shown, height, terminal, std::string("images.") + ext);
            files.push_back(dir / (std::string("images.") + ext));
        }
        if (has_log) {
            script += loss_script(terminal, std::string("loss.") + ext);
            files.push_back(dir / (std::string("loss.") + ext));
        }
        if (!images && probe.x.cols() >= 3 && c.inputs != "sphere:3") {
            script += inputs_script(probe, c, terminal, std::string("inputs.") + ext);
            files.push_back(dir / (std::string("inputs.") + ext));
        }
    }
    write_text(dir / "plot.gp", script);
    run_gnuplot(dir, "plot.gp", files);
    return files;
}

}  // namespace occam::cli
