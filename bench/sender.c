/* Paced UDP sender for the capture benchmark: sendmmsg batches at a fixed rate (0 = maximum). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 32

static double elapsed(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (now.tv_nsec - start->tv_nsec) / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s DST_IP PORT RATE_PPS SECONDS PAYLOAD_BYTES\n", argv[0]);
        return 2;
    }
    long rate = atol(argv[3]);
    double seconds = atof(argv[4]);
    int size = atoi(argv[5]);
    if (size < 8 || size > 1400 || seconds <= 0 || seconds > 60) {
        fprintf(stderr, "payload 8-1400 bytes, 0-60 seconds\n");
        return 2;
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[1]);
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        perror("socket/connect");
        return 1;
    }
    static char payload[BATCH][1500];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = payload[i];
        iov[i].iov_len = size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    struct timespec start, pause = {0, 100000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    long sent = 0;
    for (;;) {
        double now = elapsed(&start);
        if (now >= seconds)
            break;
        long due = rate > 0 ? (long)(now * rate) : sent + BATCH;
        if (sent >= due) {
            nanosleep(&pause, NULL);
            continue;
        }
        int n = due - sent > BATCH ? BATCH : (int)(due - sent);
        for (int i = 0; i < n; i++)
            memcpy(payload[i], &(long){sent + i}, sizeof(long));
        int done = sendmmsg(fd, msgs, n, 0);
        if (done > 0)
            sent += done;
    }
    printf("%ld\n", sent);
    return 0;
}
