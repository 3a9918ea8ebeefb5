#include "mpi.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <stdexcept>

#ifdef OCCAM_HAVE_MPI
#include <mpi.h>
#endif

namespace occam::cli::mpi {

namespace {
bool g_active = false;  // MPI_Init_thread was called (and MPI_Finalize not yet)
int g_rank = 0, g_size = 1;
}  // namespace

bool launched_by_mpirun() {
    // OpenMPI's mpirun, MPICH/Hydra and SLURM's srun (PMI, PMIx) each set one of these.
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
        if (std::getenv(var)) return true;
    return false;
}

bool built_with_mpi() {
#ifdef OCCAM_HAVE_MPI
    return true;
#else
    return false;
#endif
}

Session::Session(int& argc, char**& argv) {
#ifdef OCCAM_HAVE_MPI
    // Not under a launcher, MPI is not started at all: a plain `occam run` pays nothing for it
    // (OpenMPI's singleton start takes about half a second and may print warnings).
    if (!launched_by_mpirun()) return;
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        throw std::runtime_error("MPI_Init_thread failed");
    g_active = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
#else
    (void)argc;
    (void)argv;
    // Several copies of a serial occam would each do the whole job in the same directories.
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
        if (const char* n = std::getenv(var); n && std::string(n) != "1") {
            std::fprintf(stderr,
                         "occam: started by mpirun with %s processes, but this occam was built without MPI "
                         "(install OpenMPI and configure with -DOCCAM_MPI=ON)\n",
                         n);
            std::exit(1);
        }
#endif
}

Session::~Session() {
#ifdef OCCAM_HAVE_MPI
    if (g_active) MPI_Finalize();
    g_active = false;
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }

void barrier() {
#ifdef OCCAM_HAVE_MPI
    if (g_active) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

std::vector<double> all_gather(const std::vector<double>& mine) {
#ifdef OCCAM_HAVE_MPI
    if (g_active && g_size > 1) {
        int n = int(mine.size());
        std::vector<int> counts(static_cast<std::size_t>(g_size), 0), offsets(static_cast<std::size_t>(g_size), 0);
        MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD);
        int total = 0;
        for (int r = 0; r < g_size; ++r) {
            offsets[std::size_t(r)] = total;
            total += counts[std::size_t(r)];
        }
        std::vector<double> all(static_cast<std::size_t>(total), 0.0);
        MPI_Allgatherv(mine.data(), n, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE,
                       MPI_COMM_WORLD);
        return all;
    }
#endif
    return mine;
}

std::string broadcast(const std::string& text, int root) {
#ifdef OCCAM_HAVE_MPI
    if (g_active && g_size > 1) {
        unsigned long long n = text.size();
        MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD);
        std::string out = g_rank == root ? text : std::string(n, '\0');
        // In pieces below INT_MAX bytes: MPI counts are int.
        for (unsigned long long at = 0; at < n; at += 1ull << 30) {
            const int piece = int(std::min<unsigned long long>(n - at, 1ull << 30));
            MPI_Bcast(out.data() + at, piece, MPI_CHAR, root, MPI_COMM_WORLD);
        }
        return out;
    }
#endif
    (void)root;
    return text;
}

void abort_all(int code) {
#ifdef OCCAM_HAVE_MPI
    if (g_active && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    std::exit(code);
}

}  // namespace occam::cli::mpi
