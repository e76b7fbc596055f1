#!/bin/sh
# Builds the three libraries pi-agent links statically (mbedTLS, libcurl, cJSON)
# from Debian's source packages with musl-gcc into build/deps/prefix.
# Each library is pinned to one version; a finished build leaves a stamp so
# later builds reuse the prefix. Nothing here is committed.
set -eu

TOP=$(cd "$(dirname "$0")/.." && pwd)
DEPS="$TOP/build/deps"
PREFIX="$DEPS/prefix"
SRC="$DEPS/src"

MBEDTLS_VERSION=2.28.3-1
CURL_VERSION=7.88.1-10+deb12u15
CJSON_VERSION=1.7.15-1+deb12u4
STAMP="$PREFIX/.built-mbedtls-$MBEDTLS_VERSION-curl-$CURL_VERSION-cjson-$CJSON_VERSION"

JOBS=$(nproc 2>/dev/null || echo 2)

if [ -f "$STAMP" ]; then
    exit 0
fi

"$TOP/scripts/install-packages.sh" musl-tools dpkg-dev make pkg-config

mkdir -p "$SRC" "$PREFIX/lib" "$PREFIX/include"

# fetch PACKAGE VERSION: unpack Debian's source package at exactly VERSION
# (the archive keeps only the newest revision, so the upstream version must
# match when the exact revision is gone: the build never drifts silently).
fetch() {
    pkg=$1 version=$2
    dir=$(ls -d "$SRC/$pkg"-[0-9]*/ 2>/dev/null | head -n 1 || true)
    if [ -n "$dir" ]; then echo "${dir%/}"; return; fi
    (cd "$SRC" && apt-get source -qq --only-source "$pkg=$version" >/dev/null 2>&1) || {
        upstream=${version%-*}
        echo "build-deps: $pkg $version is no longer in the archive; taking the archive's $pkg $upstream" >&2
        (cd "$SRC" && apt-get source -qq --only-source "$pkg" >/dev/null)
    }
    dir=$(ls -d "$SRC/$pkg"-[0-9]*/ | head -n 1)
    case "$dir" in
        *"-${version%-*}/") ;;
        *) echo "build-deps: expected $pkg ${version%-*}, found $dir" >&2; exit 1 ;;
    esac
    echo "${dir%/}"
}

export CC=musl-gcc
HARDEN="-Os -fPIE -ffunction-sections -fdata-sections -fstack-protector-strong -D_FORTIFY_SOURCE=2"

# --- mbedTLS ---------------------------------------------------------------
if [ ! -f "$PREFIX/lib/libmbedtls.a" ]; then
    d=$(fetch mbedtls "$MBEDTLS_VERSION")
    make -C "$d/library" -j"$JOBS" CC=musl-gcc CFLAGS="$HARDEN -I../include" \
        libmbedcrypto.a libmbedx509.a libmbedtls.a >/dev/null
    cp "$d"/library/libmbed*.a "$PREFIX/lib/"
    cp -r "$d/include/mbedtls" "$d/include/psa" "$PREFIX/include/"
fi

# --- cJSON -----------------------------------------------------------------
if [ ! -f "$PREFIX/lib/libcjson.a" ]; then
    d=$(fetch cjson "$CJSON_VERSION")
    mkdir -p "$PREFIX/include/cjson"
    musl-gcc $HARDEN -std=c89 -c "$d/cJSON.c" -o "$d/cJSON.o"
    ar rcs "$PREFIX/lib/libcjson.a" "$d/cJSON.o"
    cp "$d/cJSON.h" "$PREFIX/include/cjson/"
fi

# --- libcurl (http and https only, over mbedTLS) ---------------------------
if [ ! -f "$PREFIX/lib/libcurl.a" ]; then
    d=$(fetch curl "$CURL_VERSION")
    (cd "$d" && [ -x configure ] || autoreconf -fi >/dev/null)
    (cd "$d" && CC=musl-gcc CFLAGS="$HARDEN" CPPFLAGS="-I$PREFIX/include" LDFLAGS="-L$PREFIX/lib" \
        ./configure --quiet --prefix="$PREFIX" --disable-shared --enable-static \
        --with-mbedtls="$PREFIX" --without-zlib --without-brotli --without-zstd \
        --without-libpsl --without-libidn2 --without-nghttp2 --without-libssh2 --without-librtmp \
        --without-ngtcp2 --without-nghttp3 --without-gssapi --without-ca-bundle --with-ca-fallback=no \
        --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
        --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp \
        --disable-gopher --disable-mqtt --disable-manual --disable-ntlm \
        --disable-cookies --disable-alt-svc \
        --disable-hsts --disable-doh --disable-netrc --disable-progress-meter --enable-threaded-resolver=no \
        --disable-threaded-resolver --disable-unix-sockets >/dev/null)
    make -C "$d/lib" -j"$JOBS" >/dev/null
    make -C "$d/lib" install >/dev/null
    make -C "$d/include" install >/dev/null
fi

touch "$STAMP"
echo "build-deps: mbedTLS $MBEDTLS_VERSION, curl $CURL_VERSION, cJSON $CJSON_VERSION in $PREFIX"
