-- Argo CD health check for sluice.dev/Release. It reads only status, which Sluice alone writes:
-- the kstatus conditions Ready / Reconciling / Stalled and the phase.
--   Healthy      Ready=True: the version the spec names serves on every stable pod
--   Progressing  Sluice has not observed the latest spec yet, or a rollout is under way
--   Suspended    the rollout waits for a person: a pause step, a promote gate, an inconclusive
--                analysis, `sluice pause` (`sluice promote`, `resume`, `retry` or `abort` moves it)
--   Degraded     Stalled=True: rolled back, failed, paused on a failure, or input Sluice cannot
--                use; the version the spec names will not serve until the spec or a person acts
-- To count a rollout that waits for a person as healthy, set WAITING to "Healthy".
local WAITING = "Suspended"

local hs = {status = "Progressing", message = "waiting for Sluice to observe the Release"}
if obj.status == nil then
  return hs
end
local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.message = "waiting for Sluice to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    conditions[condition.type] = condition
  end
end
local function holds(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end
hs.message = status.message or ""
if holds("Stalled") then
  hs.status = "Degraded"
elseif holds("Ready") then
  hs.status = "Healthy"
elseif status.phase == "Paused" then
  hs.status = WAITING
else
  hs.status = "Progressing"
end
return hs
