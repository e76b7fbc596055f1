<%@ page contentType="text/html; charset=UTF-8" session="false" import="java.nio.file.*,java.util.*" %><%!
    // Everything shown here is what pi-agent prepared: the licence status it
    // handed over and the persistent folders it linked to EFS. Never the
    // licence itself.
    static String esc(String s) {
        if (s == null) return "";
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
    static final String[][] FOLDERS = {
        {"themes", "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/themes"},
        {"images", "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/images"},
        {"files", "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/files"},
        {"svg", "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/svg"},
        {"locale", "/var/panintelligence/Dashboard/tomcat/webapps/panMISDashboardResources/locale"},
        {"keys", "/var/panintelligence/Dashboard/keys"},
        {"custom_jdbc", "/var/panintelligence/Dashboard/custom_jdbc"},
    };
%><!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Panintelligence dashboard (stand-in)</title>
<style>body{font-family:sans-serif;margin:2em;max-width:60em}td,th{padding:.2em .8em;text-align:left}
pre{background:#f4f4f4;padding:1em;white-space:pre-wrap}.ok{color:#070}.bad{color:#a00}</style></head>
<body>
<h1>Panintelligence dashboard <small>(stand-in for tests and the demo)</small></h1>
<%
    String status = System.getenv("PI_LICENCE_STATUS");
    boolean good = "valid".equals(status) || "expiring".equals(status);
%>
<h2>Licence</h2>
<p>Status handed over by pi-agent: <b class="<%= good ? "ok" : "bad" %>"><%= esc(status == null ? "(not set: is pi-agent the entrypoint?)" : status) %></b></p>
<%
    Path statusFile = Paths.get("/run/pi-agent/licence.json");
    if (Files.isReadable(statusFile)) {
%><pre><%= esc(new String(Files.readAllBytes(statusFile), "UTF-8")) %></pre><%
    }
%>
<h2>Persistent folders</h2>
<table><tr><th>folder</th><th>path</th><th>links to</th><th>entries</th></tr>
<%
    for (String[] f : FOLDERS) {
        Path p = Paths.get(f[1]);
        String target = "";
        if (Files.isSymbolicLink(p)) target = Files.readSymbolicLink(p).toString();
        List<String> names = new ArrayList<>();
        if (Files.isDirectory(p)) {
            try (DirectoryStream<Path> ds = Files.newDirectoryStream(p)) {
                for (Path e : ds) names.add(e.getFileName().toString());
            }
        }
        Collections.sort(names);
%><tr><td><%= f[0] %></td><td><code><%= esc(f[1]) %></code></td><td><code><%= esc(target.isEmpty() ? "(not linked)" : target) %></code></td><td><%= esc(String.join(", ", names)) %></td></tr>
<%
    }
%></table>
<p>Health as the load balancer sees it: port 8225 <code>/health</code> (pi-agent), the dashboard itself: <a href="version"><code>/pi/version</code></a>.</p>
</body></html>
