# shellcheck shell=sh
# Sourced by catalina.sh. PI_TOMCAT_PORT is the stand-in's own variable (the
# vendor's image always listens on 8224).
case "${PI_TOMCAT_PORT:-8224}" in
    ''|*[!0-9]*) echo "setenv.sh: PI_TOMCAT_PORT must be a port number, got '$PI_TOMCAT_PORT'" >&2; exit 78 ;;
esac
CATALINA_OPTS="$CATALINA_OPTS -Dpi.tomcat.port=${PI_TOMCAT_PORT:-8224}"
# Quick, small JVM for tests; a heap set by a pre-start hook (JAVA_OPTS or
# CATALINA_OPTS with -Xmx) or PI_TOMCAT_MAX_MEMORY wins over the default.
CATALINA_OPTS="$CATALINA_OPTS -Djava.security.egd=file:/dev/./urandom -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
case " $JAVA_OPTS $CATALINA_OPTS " in
    *" -Xmx"*) ;;
    *) if [ -n "${PI_TOMCAT_MAX_MEMORY:-}" ]; then
           CATALINA_OPTS="$CATALINA_OPTS -Xmx${PI_TOMCAT_MAX_MEMORY}m"
       else
           CATALINA_OPTS="$CATALINA_OPTS -Xmx256m"
       fi ;;
esac
