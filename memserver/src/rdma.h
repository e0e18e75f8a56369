/* The rdma-core headers memserver binds (see build.rs). */
#include <netinet/in.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>
