# The demo systems, as data: name -> options. Tests copy this directory and edit this file
# to change one system's closure and nothing else.
#   message:         printed on the console at boot (changing it changes the closure)
#   switchBehaviour: "ok" | "fail" (exit 1, change nothing) | "degraded" (switch, exit 4)
#   failBuild:       true makes the build fail (for tests of build errors)
#   healthy:         false writes "broken" to etc/reconcile-health (for health-check tests)
#   switchDelay:     seconds switch-to-configuration waits before acting
{
  demo-a = { message = "demo system a"; };
  demo-b = { message = "demo system b"; };
  demo-c = { message = "demo system c"; };
  demo-broken = { failBuild = true; };
}
