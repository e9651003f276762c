// The nghttp2 transport (h2_server.*) as the host's Transport (../main.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "../main.h"
#include "h2_server.h"

namespace pgf_host {

class H2Transport final : public Transport {
 public:
  bool Start(const Options& opts, int* port, std::string* error) override {
    server_ = std::make_unique<h2::Server>(opts);
    return server_->Start(port, error);
  }
  void Shutdown(double grace_seconds) override {
    server_->Shutdown(h2::MonotonicMs() + static_cast<int64_t>(grace_seconds * 1000));
  }

 private:
  std::unique_ptr<h2::Server> server_;
};

}  // namespace pgf_host
