<%@ page contentType="application/json; charset=UTF-8" session="false" trimDirectiveWhitespaces="true" %><%
    // Which replica answered: the load test behind HAProxy counts these.
    String instance = System.getenv("PI_STANDIN_INSTANCE");
    if (instance == null || instance.isEmpty()) instance = java.net.InetAddress.getLocalHost().getHostName();
    instance = instance.replaceAll("[^A-Za-z0-9_.-]", "_");
%>{"product":"dashboard","version":"2025_10.1-standin","instance":"<%= instance %>"}
