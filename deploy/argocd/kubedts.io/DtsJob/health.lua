-- Argo CD health check for kubedts.io/DtsJob (dts-operator).
--
-- Reads only the kstatus conditions the operator writes (Ready, Reconciling,
-- Stalled; Paused while the kubedts.io/paused annotation is "true"), the
-- generations and status.phase, never the reasons, so a new reason needs no
-- change here. In order:
--   no status yet, or a status for an older generation  -> Progressing
--   Paused=True                                          -> Suspended
--   Stalled=True                                         -> Degraded
--   Reconciling=True                                     -> Progressing
--   Ready=True, phase Suspended (desiredState Suspended) -> Suspended
--   Ready=True                                           -> Healthy
--   Ready=False                                          -> Degraded
--   otherwise (Ready Unknown or missing)                 -> Progressing
-- The message is "<Reason>: <condition message>".
--
-- Uses only Lua's base library: Argo CD runs argocd-cm health scripts without
-- the string library unless useOpenLibs is set.

local hs = {}

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": " .. c.message
    else
      text = c.message
    end
  end
  return text
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for dts-operator to report a status"
  return hs
end

local conditions = {}
for _, c in ipairs(status.conditions) do
  if c.type ~= nil then
    conditions[c.type] = c
  end
end

-- Paused first: the operator then keeps the status it had, which may
-- describe an older generation.
local paused = conditions["Paused"]
if paused ~= nil and paused.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(paused)
  return hs
end

local function current(observed)
  return generation == nil or (observed ~= nil and observed >= generation)
end

if not current(status.observedGeneration) then
  hs.status = "Progressing"
  hs.message = "Waiting for dts-operator to observe generation " .. tostring(generation)
  if status.observedGeneration ~= nil then
    hs.message = hs.message .. " (status describes generation " .. tostring(status.observedGeneration) .. ")"
  end
  return hs
end

local function true_and_current(name)
  local c = conditions[name]
  if c ~= nil and c.status == "True" and current(c.observedGeneration) then
    return c
  end
  return nil
end

local stalled = true_and_current("Stalled")
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local reconciling = true_and_current("Reconciling")
if reconciling ~= nil then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = conditions["Ready"]
if ready ~= nil and current(ready.observedGeneration) then
  if ready.status == "True" then
    if status.phase == "Suspended" then
      hs.status = "Suspended"
    else
      hs.status = "Healthy"
    end
    hs.message = describe(ready)
    return hs
  end
  if ready.status == "False" then
    hs.status = "Degraded"
    hs.message = describe(ready)
    return hs
  end
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for dts-operator to report the Ready condition of generation " .. tostring(generation)
return hs
