// The processes of one `mpirun` (or `srun`): who this process is, and the few collectives occam
// needs to split runs and populations across them. Built on MPI when OCCAM_MPI is on, and MPI
// is started only when a launcher started this process (its environment says so); otherwise
// this is one process, rank 0 of 1, and every collective returns its own input.
#pragma once

#include <string>
#include <vector>

namespace occam::cli::mpi {

/// Starts MPI in main() when this process was launched by mpirun or srun, and ends it on
/// destruction. Only the main thread calls MPI (MPI_THREAD_FUNNELED).
class Session {
public:
    Session(int& argc, char**& argv);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
};

int rank();                  ///< this process, 0 .. size() - 1
int size();                  ///< processes in the job (1 without MPI)
bool built_with_mpi();       ///< whether this occam was built with OCCAM_MPI
bool launched_by_mpirun();   ///< whether a launcher's environment is set (even if not built with MPI)

void barrier();

/// The concatenation, in rank order, of every process's `mine` (their lengths may differ).
std::vector<double> all_gather(const std::vector<double>& mine);

/// Process `root`'s `text`, on every process.
std::string broadcast(const std::string& text, int root);

/// Ends every process of the job with `code`: one that fails alone must not leave the others
/// waiting in a collective.
[[noreturn]] void abort_all(int code);

}  // namespace occam::cli::mpi
