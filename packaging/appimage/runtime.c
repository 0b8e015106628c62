/*
 * AppImage type-2 runtime for Based.
 *
 * Written from the AppImage specification (AppImageSpec, "Type 2 image format") and the documented
 * behaviour of the reference runtime (AppImage/type2-runtime). An AppImage is this ELF executable
 * with a squashfs image appended right after its last section (or section-header table), and the
 * bytes "AI\x02" at offset 8 (e_ident padding; written by build_appimage.sh).
 *
 * Running it:
 *   1. mounts the appended image read-only with FUSE, in-process (libfuse3 low level + the
 *      squashfuse library), on $TMPDIR/.mount_<name>XXXXXX, from a detached server process;
 *   2. execs <mount>/AppRun with the original arguments and APPIMAGE, APPDIR, ARGV0 and OWD set;
 *      the app keeps the pid the user started;
 *   3. the server unmounts and removes the mount point when the app (and every process that
 *      inherited its keep-alive pipe) has exited, or on SIGTERM/SIGINT/SIGHUP.
 * When FUSE cannot be used (no /dev/fuse, no fusermount3/fusermount, mount not permitted) it says
 * so in one line and falls back to extracting the image to a private temporary folder, running
 * AppRun from there and deleting the folder afterwards.
 *
 * Options (the first argument starting with "--" is inspected, as in the reference runtime):
 *   --appimage-extract [pattern]  --appimage-extract-and-run  --appimage-mount  --appimage-offset
 *   --appimage-help  --appimage-version  --appimage-updateinfo[rmation]  --appimage-signature
 *   --appimage-portable-home  --appimage-portable-config
 * Environment: APPIMAGE_EXTRACT_AND_RUN (set: never use FUSE), NO_CLEANUP (keep the extracted
 * folder), TMPDIR, VERBOSE (say what happens, show libfuse's messages).
 *
 * Licence: MIT, like Based. Links libfuse3 (LGPL-2.1), squashfuse (BSD-2-Clause), zstd, xz, lz4,
 * lzo2 (GPL-2+) and zlib statically: see --appimage-help and docs/packaging.md.
 */
#define _GNU_SOURCE

#include <squashfuse/ll.h> /* pulls in squashfuse.h, its config.h and <fuse3/fuse_lowlevel.h> */

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef RUNTIME_VERSION
#define RUNTIME_VERSION "unversioned"
#endif

#define EXIT_LAUNCH_ERROR 127 /* launcher failure, as for a shell's "command not found" */

/* Room that appimagetool-style tools fill in place (update information, signature, its key). */
__attribute__((section(".upd_info"), used, aligned(1))) static const char upd_info[1024] = {0};
__attribute__((section(".sha256_sig"), used, aligned(1))) static const char sha256_sig[1024] = {0};
__attribute__((section(".sig_key"), used, aligned(1))) static const char sig_key[8192] = {0};

/* squashfuse's decompressor table refers to LZO. This runtime's images use zstd, and liblzo2 is
 * GPL-licensed: rather than link it, LZO-compressed blocks are refused (read error). */
int lzo1x_decompress_safe(const unsigned char *src, unsigned long src_len, unsigned char *dst,
                          unsigned long *dst_len, void *wrkmem);
int lzo1x_decompress_safe(const unsigned char *src, unsigned long src_len, unsigned char *dst,
                          unsigned long *dst_len, void *wrkmem) {
    (void)src, (void)src_len, (void)dst, (void)dst_len, (void)wrkmem;
    return -1; /* LZO_E_ERROR */
}

static bool verbose;
static const char *progname = "AppImage";

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void debug(const char *fmt, ...) {
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", progname);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- the ELF part: where the image starts, named sections ------------------------------------- */

static bool read_at(int fd, void *buf, size_t n, off_t off) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        done += (size_t)r;
    }
    return true;
}

/* Reads the ELF header and section headers of a 64-bit little-endian ELF file. */
static bool read_elf(int fd, Elf64_Ehdr *eh, Elf64_Shdr **shdrs) {
    *shdrs = NULL;
    if (!read_at(fd, eh, sizeof(*eh), 0) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
        eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shnum == 0 || eh->e_shnum > 4096)
        return false;
    Elf64_Shdr *sh = calloc(eh->e_shnum, sizeof(*sh));
    if (!sh || !read_at(fd, sh, (size_t)eh->e_shnum * sizeof(*sh), (off_t)eh->e_shoff)) {
        free(sh);
        return false;
    }
    *shdrs = sh;
    return true;
}

/* The byte offset at which the appended filesystem image starts: the end of the ELF file, i.e.
 * the end of its section-header table or of its last section with file contents, whichever is
 * later. Returns -1 when the file is not an ELF file this runtime understands. */
static off_t image_offset(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    Elf64_Ehdr eh;
    Elf64_Shdr *sh;
    off_t end = -1;
    if (read_elf(fd, &eh, &sh)) {
        end = (off_t)(eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize);
        for (unsigned i = 0; i < eh.e_shnum; i++) {
            if (sh[i].sh_type == SHT_NOBITS)
                continue;
            off_t e = (off_t)(sh[i].sh_offset + sh[i].sh_size);
            if (e > end)
                end = e;
        }
        free(sh);
    }
    close(fd);
    return end;
}

/* Prints the contents of the named ELF section up to its first NUL byte (an empty line when the
 * section is empty or missing), as the reference runtime does for update info and signatures. */
static int print_section(const char *path, const char *name) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        say("cannot open %s: %s", path, strerror(errno));
        return 1;
    }
    Elf64_Ehdr eh;
    Elf64_Shdr *sh;
    int rc = 1;
    if (read_elf(fd, &eh, &sh) && eh.e_shstrndx < eh.e_shnum) {
        Elf64_Shdr *strtab = &sh[eh.e_shstrndx];
        char *names = calloc(1, strtab->sh_size + 1);
        if (names && read_at(fd, names, strtab->sh_size, (off_t)strtab->sh_offset)) {
            rc = 0;
            for (unsigned i = 0; i < eh.e_shnum; i++) {
                if (sh[i].sh_name >= strtab->sh_size || strcmp(names + sh[i].sh_name, name) != 0)
                    continue;
                size_t n = sh[i].sh_size > (1 << 20) ? (1 << 20) : sh[i].sh_size;
                char *data = calloc(1, n + 1);
                if (data && read_at(fd, data, n, (off_t)sh[i].sh_offset))
                    fputs(data, stdout);
                free(data);
                break;
            }
            putchar('\n');
        }
        free(names);
        free(sh);
    }
    if (rc)
        say("%s is not an ELF file this runtime can read", path);
    close(fd);
    return rc;
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static const char *temp_base(void) {
    const char *t = getenv("TMPDIR");
    return (t && *t) ? t : "/tmp";
}

/* "<TMPDIR>/<prefix><first 6 characters of argv0's base name>XXXXXX", like the reference runtime. */
static char *temp_template(const char *prefix, const char *argv0) {
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    char *t = NULL;
    if (asprintf(&t, "%s/%s%.6sXXXXXX", temp_base(), prefix, base) < 0)
        return NULL;
    return t;
}

/* Portable mode: "<AppImage>.home" / "<AppImage>.config" next to the file become HOME /
 * XDG_CONFIG_HOME when they are writable folders. */
static void apply_portable_dirs(const char *appimage) {
    static const struct { const char *suffix, *var; } dirs[] = {
        {".home", "HOME"}, {".config", "XDG_CONFIG_HOME"}};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        char *p = NULL;
        struct stat st;
        if (asprintf(&p, "%s%s", appimage, dirs[i].suffix) < 0)
            continue;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && access(p, W_OK) == 0) {
            debug("setting %s to %s", dirs[i].var, p);
            setenv(dirs[i].var, p, 1);
        }
        free(p);
    }
}

static void set_app_environment(const char *appimage, const char *appdir, const char *argv0) {
    setenv("APPIMAGE", appimage, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv0, 1);
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof(cwd)))
        setenv("OWD", cwd, 1);
    apply_portable_dirs(appimage);
}

/* ---- extraction ------------------------------------------------------------------------------------ */

/* A folder being extracted into. Opened (and created) only when something is written below it,
 * so that a pattern extracts just the matching entries and the folders leading to them. */
struct outdir {
    struct outdir *parent;
    const char *name;   /* in parent */
    int fd;             /* -1 until opened */
};

static int outdir_fd(struct outdir *d) {
    if (d->fd >= 0)
        return d->fd;
    int pfd = outdir_fd(d->parent);
    if (pfd < 0)
        return -1;
    if (mkdirat(pfd, d->name, 0755) != 0 && errno != EEXIST)
        return -1;
    d->fd = openat(pfd, d->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d->fd >= 0 && faccessat(d->fd, ".", W_OK, AT_EACCESS) != 0) {
        struct stat st; /* a read-only folder left by an earlier extraction: make it writable */
        if (fstat(d->fd, &st) == 0)
            fchmod(d->fd, (st.st_mode & 07777) | S_IRWXU);
    }
    return d->fd;
}

struct extraction {
    sqfs fs;
    const char *pattern;   /* NULL: everything */
    char **first_path;     /* by inode number: where a hard-linked file was first written */
    size_t n_inodes;
    int root_fd;
    bool ok;
};

static bool entry_wanted(const struct extraction *x, const char *path) {
    return !x->pattern || fnmatch(x->pattern, path, FNM_PATHNAME | FNM_LEADING_DIR) == 0;
}

static void set_times(int dirfd, const char *name, const sqfs_inode *inode) {
    struct timespec ts[2] = {{.tv_sec = inode->base.mtime}, {.tv_sec = inode->base.mtime}};
    utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
}

static bool write_file(struct extraction *x, sqfs_inode *inode, int dfd, const char *name,
                       const char *path) {
    uint32_t num = inode->base.inode_number;
    if (num >= 1 && num <= x->n_inodes && x->first_path[num - 1]) { /* another name, same file */
        unlinkat(dfd, name, 0);
        if (linkat(x->root_fd, x->first_path[num - 1], dfd, name, 0) == 0)
            return true;
        say("cannot link %s: %s", path, strerror(errno));
        return false;
    }
    if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) {
        say("cannot replace %s: %s", path, strerror(errno));
        return false;
    }
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        say("cannot create %s: %s", path, strerror(errno));
        return false;
    }
    static char buf[256 * 1024];
    uint64_t size = inode->xtra.reg.file_size, pos = 0;
    bool ok = true;
    while (ok && pos < size) {
        sqfs_off_t n = (sqfs_off_t)(size - pos < sizeof(buf) ? size - pos : sizeof(buf));
        if (sqfs_read_range(&x->fs, inode, (sqfs_off_t)pos, &n, buf) != SQFS_OK || n <= 0) {
            say("cannot read %s from the image", path);
            ok = false;
            break;
        }
        for (sqfs_off_t w = 0; w < n;) {
            ssize_t r = write(fd, buf + w, (size_t)(n - w));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                say("cannot write %s: %s", path, strerror(errno));
                ok = false;
                break;
            }
            w += r;
        }
        pos += (uint64_t)n;
    }
    /* set-user/group-ID bits are not carried over: the extracted copy belongs to whoever ran it */
    if (ok && fchmod(fd, inode->base.mode & 0777) != 0)
        ok = false;
    struct timespec ts[2] = {{.tv_sec = inode->base.mtime}, {.tv_sec = inode->base.mtime}};
    futimens(fd, ts);
    if (close(fd) != 0)
        ok = false;
    if (ok && inode->nlink > 1 && num >= 1 && num <= x->n_inodes)
        x->first_path[num - 1] = strdup(path);
    return ok;
}

/* Extracts the entries of the image folder `dir_inode` (at relative path `prefix`, "" for the
 * root) into `out`. */
static void extract_dir(struct extraction *x, sqfs_inode *dir_inode, const char *prefix,
                        struct outdir *out) {
    sqfs_dir dir;
    sqfs_dir_entry entry;
    sqfs_name name;
    sqfs_err err = SQFS_OK;
    if (sqfs_dir_open(&x->fs, dir_inode, &dir, 0) != SQFS_OK) {
        say("cannot read the folder %s in the image", *prefix ? prefix : "/");
        x->ok = false;
        return;
    }
    sqfs_dentry_init(&entry, name);
    while (x->ok && sqfs_dir_next(&x->fs, &dir, &entry, &err)) {
        const char *n = sqfs_dentry_name(&entry);
        if (!*n || strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strchr(n, '/')) {
            say("the image holds an invalid file name; stopping");
            x->ok = false;
            return;
        }
        char *path = NULL;
        if (asprintf(&path, "%s%s%s", prefix, *prefix ? "/" : "", n) < 0) {
            x->ok = false;
            return;
        }
        sqfs_inode inode;
        if (sqfs_inode_get(&x->fs, &inode, sqfs_dentry_inode(&entry)) != SQFS_OK) {
            say("cannot read %s from the image", path);
            x->ok = false;
            free(path);
            return;
        }
        bool wanted = entry_wanted(x, path);
        if (wanted)
            debug("extracting %s", path);
        mode_t type = inode.base.mode & S_IFMT;
        if (S_ISDIR(inode.base.mode)) {
            /* `n` lives in this call's own name buffer: it stays valid during the recursion */
            struct outdir sub = {.parent = out, .name = n, .fd = -1};
            if (wanted && outdir_fd(&sub) < 0) {
                say("cannot create the folder %s: %s", path, strerror(errno));
                x->ok = false;
            }
            if (x->ok)
                extract_dir(x, &inode, path, &sub);
            if (sub.fd >= 0) {
                if (wanted) {
                    fchmod(sub.fd, inode.base.mode & 01777);
                    struct timespec ts[2] = {{.tv_sec = inode.base.mtime}, {.tv_sec = inode.base.mtime}};
                    futimens(sub.fd, ts);
                }
                close(sub.fd);
            }
        } else if (wanted) {
            int dfd = outdir_fd(out);
            if (dfd < 0) {
                say("cannot create the folder for %s: %s", path, strerror(errno));
                x->ok = false;
            } else if (type == S_IFREG) {
                x->ok = write_file(x, &inode, dfd, n, path);
            } else if (type == S_IFLNK) {
                size_t size = 0;
                char *target = NULL;
                if (sqfs_readlink(&x->fs, &inode, NULL, &size) == SQFS_OK &&
                    (target = calloc(1, size + 1)) &&
                    sqfs_readlink(&x->fs, &inode, target, &size) == SQFS_OK) {
                    unlinkat(dfd, n, 0);
                    if (symlinkat(target, dfd, n) == 0) {
                        set_times(dfd, n, &inode);
                    } else {
                        say("cannot create the link %s: %s", path, strerror(errno));
                        x->ok = false;
                    }
                } else {
                    say("cannot read the link %s from the image", path);
                    x->ok = false;
                }
                free(target);
            } else if (type == S_IFIFO) {
                unlinkat(dfd, n, 0);
                if (mkfifoat(dfd, n, inode.base.mode & 0777) == 0)
                    set_times(dfd, n, &inode);
            } else {
                debug("skipping %s (device or socket)", path);
            }
        }
        free(path);
    }
    if (err != SQFS_OK) {
        say("cannot read the folder %s in the image", *prefix ? prefix : "/");
        x->ok = false;
    }
}

/* Extracts the image of `appimage` (starting at `offset`) into the folder `dest` (created when
 * missing); with a pattern, only the entries whose path matches it (fnmatch, FNM_PATHNAME |
 * FNM_LEADING_DIR, as in the reference runtime). */
static bool extract_image(const char *appimage, off_t offset, const char *dest, const char *pattern) {
    struct extraction x = {.pattern = pattern, .ok = true, .root_fd = -1};
    if (mkdir(dest, 0755) != 0 && errno != EEXIST) {
        say("cannot create %s: %s", dest, strerror(errno));
        return false;
    }
    x.root_fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x.root_fd < 0) {
        say("cannot open %s: %s", dest, strerror(errno));
        return false;
    }
    if (sqfs_open_image(&x.fs, appimage, (size_t)offset) != SQFS_OK) {
        say("the file system image in %s cannot be read", appimage);
        close(x.root_fd);
        return false;
    }
    x.n_inodes = x.fs.sb.inodes;
    x.first_path = calloc(x.n_inodes ? x.n_inodes : 1, sizeof(char *));
    sqfs_inode root;
    if (!x.first_path || sqfs_inode_get(&x.fs, &root, sqfs_inode_root(&x.fs)) != SQFS_OK) {
        say("the file system image in %s cannot be read", appimage);
        x.ok = false;
    } else {
        struct outdir top = {.parent = NULL, .name = dest, .fd = x.root_fd};
        extract_dir(&x, &root, "", &top);
        if (x.ok && !pattern) {
            fchmod(x.root_fd, (root.base.mode & 0777) | S_IRWXU);
        }
    }
    for (size_t i = 0; x.first_path && i < x.n_inodes; i++)
        free(x.first_path[i]);
    free(x.first_path);
    sqfs_destroy(&x.fs);
    sqfs_fd_close(x.fs.fd);
    close(x.root_fd);
    return x.ok;
}

/* rm -rf below an open folder, never leaving its file system and never following links; folders
 * made read-only by the extraction are made writable first. */
static bool remove_below(int dfd, dev_t dev) {
    int fd2 = dup(dfd);
    DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
    if (!d) {
        if (fd2 >= 0)
            close(fd2);
        return false;
    }
    bool ok = true;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            ok = false;
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (st.st_dev != dev) {
                ok = false; /* something is mounted there: leave it */
                continue;
            }
            int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 && fchmodat(dfd, e->d_name, 0700, 0) == 0) {
                sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
            if (sub < 0) {
                ok = false;
                continue;
            }
            fchmod(sub, 0700);
            ok = remove_below(sub, dev) && ok;
            close(sub);
            if (unlinkat(dfd, e->d_name, AT_REMOVEDIR) != 0)
                ok = false;
        } else if (unlinkat(dfd, e->d_name, 0) != 0) {
            ok = false;
        }
    }
    closedir(d);
    return ok;
}

static bool remove_tree(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT;
    struct stat st;
    fchmod(fd, 0700);
    bool ok = fstat(fd, &st) == 0 && remove_below(fd, st.st_dev);
    close(fd);
    return rmdir(path) == 0 && ok;
}

/* ---- extract and run ---------------------------------------------------------------------------- */

static volatile sig_atomic_t child_pid = 0;

/* Signals sent to the runtime are passed on to the app. Those the terminal sent to the whole
 * foreground process group (si_code SI_KERNEL: Ctrl-C, Ctrl-\, hang-up) already reached the app,
 * so they are not sent twice; the runtime itself stays alive to clean up after the app. */
static void forward_signal(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    if (si && si->si_code == SI_KERNEL)
        return;
    if (child_pid > 0)
        kill((pid_t)child_pid, sig);
}

static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
#define N_FORWARDED (sizeof(forwarded_signals) / sizeof(forwarded_signals[0]))

/* Runs AppRun from `appdir` as a child, passing signals on; returns its wait status. */
static int run_child(const char *appdir, char **argv, const char *appimage, const char *argv0) {
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaddset(&block, forwarded_signals[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa = {.sa_sigaction = forward_signal, .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FORWARDED; i++)
        sigaction(forwarded_signals[i], &sa, NULL);

    char *apprun = NULL;
    if (asprintf(&apprun, "%s/AppRun", appdir) < 0)
        return EXIT_LAUNCH_ERROR << 8;
    pid_t pid = fork();
    if (pid < 0) {
        say("cannot start the app: %s", strerror(errno));
        return EXIT_LAUNCH_ERROR << 8;
    }
    if (pid == 0) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (size_t i = 0; i < N_FORWARDED; i++)
            sigaction(forwarded_signals[i], &dfl, NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        set_app_environment(appimage, appdir, argv0);
        argv[0] = apprun;
        execv(apprun, argv);
        say("cannot run %s: %s", apprun, strerror(errno));
        _exit(EXIT_LAUNCH_ERROR);
    }
    child_pid = pid;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = EXIT_LAUNCH_ERROR << 8;
            break;
        }
    }
    child_pid = 0;
    free(apprun);
    return status;
}

/* Exits the way the app did: with its exit status, or killed by the same signal. */
static void exit_like(int status) {
    if (WIFEXITED(status))
        exit(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* the app has already dumped core if it was going to */
        signal(sig, SIG_DFL);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, sig);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        raise(sig);
        exit(128 + sig);
    }
    exit(EXIT_LAUNCH_ERROR);
}

static void extract_and_run(const char *appimage, off_t offset, char **argv, const char *argv0) {
    char *dir = temp_template("appimage_extracted_", argv0);
    if (!dir || !mkdtemp(dir)) {
        say("cannot create a folder in %s (%s); set TMPDIR to a writable folder", temp_base(),
            strerror(errno));
        exit(EXIT_LAUNCH_ERROR);
    }
    debug("extracting to %s", dir);
    if (!extract_image(appimage, offset, dir, NULL)) {
        say("cannot extract the AppImage to %s", dir);
        remove_tree(dir);
        exit(EXIT_LAUNCH_ERROR);
    }
    int status = run_child(dir, argv, appimage, argv0);
    if (getenv("NO_CLEANUP")) {
        debug("NO_CLEANUP is set: leaving %s", dir);
    } else if (!remove_tree(dir)) {
        say("could not delete the temporary folder %s", dir);
    }
    free(dir);
    exit_like(status);
}

/* ---- FUSE ---------------------------------------------------------------------------------------- */

/* libfuse3 runs "fusermount3" (from /usr/bin, then PATH) to mount as an ordinary user. Systems with
 * only FUSE 2 have a set-user-ID "fusermount" speaking the same protocol: offer it under the name
 * libfuse3 looks for, from a private folder put first on PATH (for this server process only). */
static char *fusermount_shim_dir;

static bool is_setuid_root_exe(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == 0 && (st.st_mode & S_ISUID);
}

static void offer_fusermount2(const char *argv0) {
    if (geteuid() == 0 || is_setuid_root_exe("/usr/bin/fusermount3") ||
        is_setuid_root_exe("/bin/fusermount3"))
        return;
    const char *path = getenv("PATH");
    char *found = NULL;
    char *copy = strdup(path && *path ? path : "/usr/bin:/bin");
    for (char *p = copy, *dir; !found && (dir = strsep(&p, ":"));) {
        char *c3 = NULL, *c2 = NULL;
        if (*dir && asprintf(&c3, "%s/fusermount3", dir) >= 0 && asprintf(&c2, "%s/fusermount", dir) >= 0) {
            if (is_setuid_root_exe(c3)) {
                free(c3);
                free(c2);
                free(copy);
                return; /* libfuse finds this one itself */
            }
            if (is_setuid_root_exe(c2))
                found = strdup(c2);
        }
        free(c3);
        free(c2);
    }
    free(copy);
    if (!found)
        return;
    char *dir = temp_template(".fusermount_", argv0);
    char *link = NULL;
    if (dir && mkdtemp(dir) && asprintf(&link, "%s/fusermount3", dir) >= 0 && symlink(found, link) == 0) {
        char *newpath = NULL;
        if (asprintf(&newpath, "%s:%s", dir, path ? path : "/usr/bin:/bin") >= 0) {
            setenv("PATH", newpath, 1);
            free(newpath);
        }
        debug("using %s as fusermount3", found);
        fusermount_shim_dir = dir;
        dir = NULL;
    } else if (dir) {
        rmdir(dir);
    }
    free(link);
    free(dir);
    free(found);
}

static void remove_fusermount_shim(void) {
    if (!fusermount_shim_dir)
        return;
    char *link = NULL;
    if (asprintf(&link, "%s/fusermount3", fusermount_shim_dir) >= 0)
        unlink(link);
    free(link);
    rmdir(fusermount_shim_dir);
}

/* The server could not mount: its exit closes the pipe the caller waits on. */
static void server_fail(void) {
    remove_fusermount_shim();
    _exit(1);
}

/* Serves requests until the file system is unmounted, a signal asks to stop, or the last process
 * holding the read end of the keep-alive pipe has exited (POLLERR on the write end). */
static void serve(struct fuse_session *se, int keep_w) {
    struct fuse_buf buf = {.mem = NULL};
    struct pollfd pfd[2] = {{.fd = fuse_session_fd(se), .events = POLLIN}, {.fd = keep_w, .events = 0}};
    while (!fuse_session_exited(se)) {
        int r = poll(pfd, 2, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents & (POLLERR | POLLHUP | POLLNVAL))
            break;
        if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL))
            break;
        if (pfd[0].revents & POLLIN) {
            int n = fuse_session_receive_buf(se, &buf);
            if (n == -EINTR || n == -EAGAIN)
                continue;
            if (n <= 0)
                break; /* 0 or -ENODEV: unmounted */
            fuse_session_process_buf(se, &buf);
        }
    }
    free(buf.mem);
}

/* Server process: mounts the image on `mnt`, reports 'M' on `keep_w` once mounted (or exits, which
 * closes the pipe: not mounted), then serves until the app is gone, unmounts and removes `mnt`.
 * libfuse's and fusermount's messages go to `err_fd` until mounted. Never returns. */
static void fuse_server(const char *image, off_t offset, const char *mnt, int keep_w, int err_fd,
                        const char *argv0) {
    sigset_t none; /* the caller may hold signals back while mounting: the server takes them */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        debug("setsid: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        dup2(devnull, STDOUT_FILENO);
    }
    dup2(err_fd, STDERR_FILENO);
    close(err_fd);
    offer_fusermount2(argv0);

    sqfs_ll *ll = sqfs_ll_open(image, (size_t)offset);
    if (!ll)
        server_fail();

    struct fuse_lowlevel_ops ops;
    memset(&ops, 0, sizeof(ops));
    ops.lookup = sqfs_ll_op_lookup;
    ops.forget = (void (*)(fuse_req_t, fuse_ino_t, uint64_t))sqfs_ll_op_forget;
    ops.getattr = sqfs_ll_op_getattr;
    ops.readlink = sqfs_ll_op_readlink;
    ops.open = sqfs_ll_op_open;
    ops.read = sqfs_ll_op_read;
    ops.release = sqfs_ll_op_release;
    ops.opendir = sqfs_ll_op_opendir;
    ops.readdir = sqfs_ll_op_readdir;
    ops.releasedir = sqfs_ll_op_releasedir;
    ops.statfs = stfs_ll_op_statfs;
    ops.getxattr = sqfs_ll_op_getxattr;
    ops.listxattr = sqfs_ll_op_listxattr;
    ops.create = sqfs_ll_op_create;

    /* read-only; fsname: the AppImage's path, commas and backslashes escaped for libfuse */
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    char *opts = NULL, *fsname = NULL;
    if (asprintf(&fsname, "fsname=%s", image) < 0 || fuse_opt_add_opt(&opts, "ro") != 0 ||
        fuse_opt_add_opt(&opts, "subtype=appimage") != 0 || fuse_opt_add_opt_escaped(&opts, fsname) != 0 ||
        fuse_opt_add_arg(&args, "appimage") != 0 || fuse_opt_add_arg(&args, "-o") != 0 ||
        fuse_opt_add_arg(&args, opts) != 0)
        server_fail();
    free(opts);
    free(fsname);

    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), ll);
    if (!se || fuse_session_mount(se, mnt) != 0)
        server_fail();
    fuse_opt_free_args(&args);

    /* mounted: stop talking to the caller's terminal, tell the caller, serve */
    if (devnull >= 0)
        dup2(devnull, STDERR_FILENO);
    if (chdir("/") != 0)
        debug("chdir: %s", strerror(errno));
    fuse_set_signal_handlers(se);
    char m = 'M';
    if (write(keep_w, &m, 1) != 1)
        fuse_session_exit(se);
    serve(se, keep_w);
    fuse_remove_signal_handlers(se);
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    sqfs_ll_destroy(ll);
    free(ll);
    remove_fusermount_shim();
    rmdir(mnt);
    _exit(0);
}

/* Mounts the image on a new temporary folder. On success returns the mount point and the read
 * end of the keep-alive pipe (the mount lasts while some process holds it); on failure returns
 * NULL and, in *why, the first line of what libfuse/fusermount said. */
static char *mount_image(const char *appimage, off_t offset, const char *argv0, int *keep_r, char **why) {
    *why = NULL;
    char *mnt = temp_template(".mount_", argv0);
    if (!mnt || !mkdtemp(mnt)) { /* extracting would need a folder there just the same */
        say("cannot create a folder in %s (%s); set TMPDIR to a writable folder", temp_base(),
            strerror(errno));
        exit(EXIT_LAUNCH_ERROR);
    }
    int keep[2], err[2];
    if (pipe2(keep, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        rmdir(mnt);
        free(mnt);
        return NULL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(keep[0]);
        close(err[0]);
        /* Detach: the server must not stay a child of the app (the app may wait for its children),
         * and must outlive this intermediate process. */
        pid_t server = fork();
        if (server != 0)
            _exit(server < 0 ? 1 : 0);
        fuse_server(appimage, offset, mnt, keep[1], err[1], argv0);
    }
    close(keep[1]);
    close(err[1]);
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    char c = 0;
    ssize_t r;
    while ((r = read(keep[0], &c, 1)) < 0 && errno == EINTR) {
    }
    /* what libfuse and fusermount printed: the server closes its end once mounted or gone */
    char text[2048];
    size_t len = 0;
    while (len < sizeof(text) - 1) {
        ssize_t n = read(err[0], text + len, sizeof(text) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    close(err[0]);
    if (verbose && len)
        fputs(text, stderr);
    if (pid > 0 && r == 1 && c == 'M') {
        *keep_r = keep[0];
        return mnt;
    }
    close(keep[0]);
    char *line = text;
    while (*line == '\n' || *line == ' ')
        line++;
    line[strcspn(line, "\n")] = '\0';
    if (!*line)
        line = "unknown reason";
    if (asprintf(why, "%s", line) < 0)
        *why = NULL;
    rmdir(mnt);
    free(mnt);
    return NULL;
}

static volatile sig_atomic_t stop_requested = 0;
static void request_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* --appimage-mount: print the mount point, keep it until interrupted, then wait for the unmount. */
static void mount_and_wait(const char *appimage, off_t offset, const char *argv0) {
    /* handlers first, signals held until waiting: an interrupt that comes while mounting or right
     * after the mount point is printed is not lost (a background job starts with SIGINT ignored) */
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, &old);
    struct sigaction sa = {.sa_handler = request_stop};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int keep_r = -1;
    char *why = NULL;
    char *mnt = mount_image(appimage, offset, argv0, &keep_r, &why);
    if (!mnt) {
        say("cannot mount the AppImage: %s", why ? why : "unknown reason");
        exit(EXIT_LAUNCH_ERROR);
    }
    printf("%s\n", mnt);
    fflush(stdout);
    sigset_t wait_mask = old;
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    sigdelset(&wait_mask, SIGHUP);
    while (!stop_requested)
        sigsuspend(&wait_mask);
    close(keep_r);
    struct stat st; /* the server unmounts and removes the mount point */
    for (int i = 0; i < 200 && !(lstat(mnt, &st) != 0 && errno == ENOENT); i++)
        usleep(50 * 1000);
    exit(0);
}

/* ---- main ------------------------------------------------------------------------------------------ */

static void print_help(const char *appimage) {
    fprintf(stderr,
            "AppImage options:\n\n"
            "  --appimage-extract [<pattern>]  Extract the embedded file system image to\n"
            "                                  ./squashfs-root (only the paths matching\n"
            "                                  <pattern>, a shell wildcard, when given)\n"
            "  --appimage-extract-and-run      Extract to a temporary folder, run the app\n"
            "                                  from there, then delete the folder\n"
            "                                  (APPIMAGE_EXTRACT_AND_RUN=1 does the same)\n"
            "  --appimage-help                 Print this help\n"
            "  --appimage-mount                Mount the image, print the mount point and\n"
            "                                  keep it mounted until interrupted (Ctrl-C)\n"
            "  --appimage-offset               Print the byte offset of the image\n"
            "  --appimage-portable-home        Create %s.home, used as $HOME\n"
            "  --appimage-portable-config      Create %s.config, used as $XDG_CONFIG_HOME\n"
            "  --appimage-signature            Print the embedded signature\n"
            "  --appimage-updateinfo[rmation]  Print the embedded update information\n"
            "  --appimage-version              Print the version of this runtime\n"
            "\n"
            "Without FUSE (no /dev/fuse, no fusermount3 or fusermount, or mounting not\n"
            "permitted) the app is run from a temporary extracted copy instead.\n"
            "\n"
            "This runtime (MIT) contains libfuse 3 (LGPL-2.1), squashfuse (BSD-2-Clause),\n"
            "zstd (BSD), xz/liblzma (public domain), lz4 (BSD-2-Clause), lzo2 (GPL-2+),\n"
            "zlib (zlib licence) and the GNU C library (LGPL-2.1), as packaged by Debian;\n"
            "their sources are available from Debian's archive (apt-get source).\n",
            appimage, appimage);
}

static void make_portable_dir(const char *appimage, const char *suffix) {
    char *p = NULL;
    if (asprintf(&p, "%s.%s", appimage, suffix) < 0)
        exit(1);
    if (mkdir(p, S_IRWXU) == 0) {
        fprintf(stderr, "Portable %s folder created at %s\n", suffix, p);
        exit(0);
    }
    fprintf(stderr, "Cannot create the portable %s folder %s: %s\n", suffix, p, strerror(errno));
    exit(1);
}

int main(int argc, char *argv[]) {
    /* keep the reserved sections through the linker's --gc-sections */
    __asm__ volatile("" : : "r"(upd_info), "r"(sha256_sig), "r"(sig_key));
    verbose = getenv("VERBOSE") != NULL;
    const char *argv0 = argc > 0 && argv[0] ? argv[0] : "AppImage";
    progname = strrchr(argv0, '/') ? strrchr(argv0, '/') + 1 : argv0;

    char appimage[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", appimage, sizeof(appimage) - 1);
    if (len <= 0) {
        say("cannot find its own file (is /proc mounted?): %s", strerror(errno));
        return EXIT_LAUNCH_ERROR;
    }
    appimage[len] = '\0';

    off_t offset = image_offset("/proc/self/exe");
    if (offset < 0) {
        say("cannot read its own ELF header");
        return EXIT_LAUNCH_ERROR;
    }

    const char *opt = NULL; /* the first argument starting with "--", without the dashes */
    for (int i = 1; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            opt = argv[i] + 2;
            break;
        }
    if (opt && strncmp(opt, "appimage-", 9) == 0) {
        const char *o = opt + 9;
        if (strcmp(o, "help") == 0) {
            print_help(appimage);
            return 0;
        }
        if (strcmp(o, "version") == 0) {
            fprintf(stderr, "AppImage runtime version: based-%s\n", RUNTIME_VERSION);
            return 0;
        }
        if (strcmp(o, "offset") == 0) {
            printf("%lld\n", (long long)offset);
            return 0;
        }
        if (strcmp(o, "extract") == 0) {
            if (argc > 3) {
                say("usage: %s --appimage-extract [<pattern>]", argv0);
                return 1;
            }
            return extract_image("/proc/self/exe", offset, "squashfs-root", argc == 3 ? argv[2] : NULL) ? 0 : 1;
        }
        if (strcmp(o, "updateinfo") == 0 || strcmp(o, "updateinformation") == 0)
            return print_section("/proc/self/exe", ".upd_info");
        if (strcmp(o, "signature") == 0)
            return print_section("/proc/self/exe", ".sha256_sig");
        if (strcmp(o, "portable-home") == 0)
            make_portable_dir(appimage, "home");
        if (strcmp(o, "portable-config") == 0)
            make_portable_dir(appimage, "config");
        if (strcmp(o, "mount") == 0)
            mount_and_wait(appimage, offset, argv0);
        if (strcmp(o, "extract-and-run") != 0) {
            say("--%s is not an option of this AppImage runtime (see --appimage-help)", opt);
            return 1;
        }
    }

    /* the app's arguments: ours, minus --appimage-extract-and-run */
    char **app_argv = calloc((size_t)argc + 1, sizeof(char *));
    if (!app_argv)
        return EXIT_LAUNCH_ERROR;
    int n = 0;
    app_argv[n++] = (char *)argv0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--appimage-extract-and-run") != 0)
            app_argv[n++] = argv[i];
    app_argv[n] = NULL;

    if (getenv("APPIMAGE_EXTRACT_AND_RUN") || (opt && strcmp(opt, "appimage-extract-and-run") == 0))
        extract_and_run(appimage, offset, app_argv, argv0);

    int keep_r = -1;
    char *why = NULL;
    char *mnt = mount_image(appimage, offset, argv0, &keep_r, &why);
    if (!mnt) {
        say("FUSE is not available (%s); running from a temporary extracted copy instead",
            why ? why : "unknown reason");
        free(why);
        extract_and_run(appimage, offset, app_argv, argv0);
    }
    debug("mounted on %s", mnt);
    set_app_environment(appimage, mnt, argv0);
    /* the app holds the read end: the mount lasts as long as it (and what it starts) runs */
    fcntl(keep_r, F_SETFD, 0);
    char *apprun = NULL;
    if (asprintf(&apprun, "%s/AppRun", mnt) < 0)
        return EXIT_LAUNCH_ERROR;
    execv(apprun, app_argv);
    say("cannot run %s: %s", apprun, strerror(errno));
    return EXIT_LAUNCH_ERROR;
}
