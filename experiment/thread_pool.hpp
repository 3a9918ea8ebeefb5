// What this file teaches: running independent tasks on a few threads in a dozen lines. Threads
// take the next index from a shared counter, so a slow task never leaves the others idle, and
// results stay identical for any thread count as long as task i depends only on i.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

namespace occam::experiment {

/// Runs f(i) for every i in [0, n) on up to `threads` threads (the calling thread is one of
/// them; threads <= 1 runs every task inline, in order). Tasks must not depend on each other
/// or on which thread runs them. When tasks throw, no new task starts, and after every thread
/// has joined the caller gets the exception of the lowest index that threw: the same one a
/// run on one thread would give, whatever the thread count.
template <class F>
void parallel_for(int n, int threads, F&& f) {
    threads = std::min(threads, n);
    if (threads <= 1) {
        for (int i = 0; i < n; ++i) f(i);
        return;
    }
    // Indices are handed out in increasing order, so when task i throws every task below i has
    // already started and will finish: the lowest index that threw is known once all joined.
    std::atomic<int> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    int error_index = n;
    std::exception_ptr error;
    auto worker = [&] {
        for (int i; !failed.load() && (i = next++) < n;) {
            try {
                f(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_lock);
                if (i < error_index) error_index = i, error = std::current_exception();
                failed = true;
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(std::size_t(threads - 1));
    for (int t = 1; t < threads; ++t) {
        try {
            pool.emplace_back(worker);
        } catch (const std::system_error&) {
            break;  // no more threads to be had: the ones running take the remaining indices
        }
    }
    worker();
    for (std::thread& t : pool) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace occam::experiment
