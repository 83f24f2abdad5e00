// Host-to-device copy bandwidth, the physical bound of a load onto a GPU:
// from pinned memory (cudaMallocHost, what a loader that stages through a
// pinned buffer gets) and from pageable memory (malloc, or a file's pages in
// the page cache or a tmpfs, what a mapped load copies from). Median of 5.
// Build: nvcc -O2 -o h2d h2d.cu     Run: ./h2d [GiB]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>

#define CHECK(call) do { cudaError_t e = (call); if (e != cudaSuccess) { \
    std::fprintf(stderr, "h2d: %s: %s\n", #call, cudaGetErrorString(e)); return 1; } } while (0)

static int median_rate(const char *what, void *host, void *device, size_t bytes) {
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));  // warm-up
    std::vector<float> rates;
    for (int i = 0; i < 5; i++) {
        float ms = 0;
        CHECK(cudaEventRecord(start));
        CHECK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice));
        CHECK(cudaEventRecord(stop));
        CHECK(cudaEventSynchronize(stop));
        CHECK(cudaEventElapsedTime(&ms, start, stop));
        rates.push_back(bytes / (ms / 1e3f) / 1e9f);
    }
    std::sort(rates.begin(), rates.end());
    std::printf("%s %.1f GB/s\n", what, rates[2]);
    return 0;
}

int main(int argc, char **argv) {
    size_t bytes = (size_t)(argc > 1 ? std::atof(argv[1]) : 4.0) * (1ull << 30);
    void *device = nullptr, *pinned = nullptr;
    CHECK(cudaMalloc(&device, bytes));
    CHECK(cudaMallocHost(&pinned, bytes));
    std::memset(pinned, 1, bytes);
    void *pageable = std::malloc(bytes);
    if (pageable == nullptr) { std::fprintf(stderr, "h2d: malloc failed\n"); return 1; }
    std::memset(pageable, 1, bytes);
    std::printf("bytes %zu\n", bytes);
    if (median_rate("pinned", pinned, device, bytes) || median_rate("pageable", pageable, device, bytes))
        return 1;
    return 0;
}
