// experiment::parallel_for: every index once, exceptions reach the caller, one thread runs inline.
#include "experiment/thread_pool.hpp"

#include <doctest/doctest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using occam::experiment::parallel_for;

TEST_CASE("parallel_for: every index runs exactly once, for any thread count") {
    for (int threads : {0, 1, 2, 3, 8, 100}) {
        for (int n : {0, 1, 7, 1000}) {
            std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
            parallel_for(n, threads, [&](int i) { ++runs[std::size_t(i)]; });
            for (int i = 0; i < n; ++i) CHECK(runs[std::size_t(i)] == 1);
        }
    }
}

TEST_CASE("parallel_for: one thread runs the tasks inline, in order") {
    const std::thread::id caller = std::this_thread::get_id();
    std::vector<int> order;
    parallel_for(5, 1, [&](int i) {
        CHECK(std::this_thread::get_id() == caller);
        order.push_back(i);
    });
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("parallel_for: the lowest failing index's exception reaches the caller") {
    for (int threads : {1, 2, 4}) {
        CAPTURE(threads);
        // Tasks 30 and 70 throw; 30's exception comes back whatever the threads' timing.
        std::atomic<int> ran{0};
        try {
            parallel_for(100, threads, [&](int i) {
                ++ran;
                if (i == 30 || i == 70) throw std::runtime_error("task " + std::to_string(i));
            });
            FAIL("no exception");
        } catch (const std::runtime_error& e) {
            CHECK(std::string(e.what()) == "task 30");
        }
        CHECK(ran >= 31);  // every task below the failing one ran
    }
    // A type that is not a std::exception comes through too.
    CHECK_THROWS_AS(parallel_for(10, 3,
                                 [](int i) {
                                     if (i == 5) throw 42;
                                 }),
                    int);
}
