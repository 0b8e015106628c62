/* A Vulkan layer for tests: a GPU with little memory, or one whose driver fails.
 *
 * Built by tests/vulkan_env.py with the system's C compiler and Vulkan headers, enabled for one
 * process by VK_LAYER_PATH + VK_INSTANCE_LAYERS=VK_LAYER_BASED_test_limits. Under it, the device
 * (Mesa's lavapipe in the tests) behaves like a small or a broken GPU:
 *
 *   BASED_VK_MEMORY_LIMIT=<bytes>  every memory heap reports at most this size (and, with
 *                                  VK_EXT_memory_budget, this budget and what is in use), and
 *                                  vkAllocateMemory returns VK_ERROR_OUT_OF_DEVICE_MEMORY once the
 *                                  allocations together would pass it;
 *   BASED_VK_FAIL=create_device    vkCreateDevice returns VK_ERROR_INITIALIZATION_FAILED (what a
 *                                  broken or mismatched driver does);
 *   BASED_VK_FAIL=submit           vkQueueSubmit returns VK_ERROR_DEVICE_LOST (a driver that fails
 *                                  while computing: a hang, a reset, a crashed GPU process).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vk_layer.h>
#include <vulkan/vulkan.h>

#define EXPORT __attribute__((visibility("default")))

static PFN_vkGetInstanceProcAddr next_gipa;
static PFN_vkGetDeviceProcAddr next_gdpa;
static PFN_vkGetPhysicalDeviceMemoryProperties next_props;
static PFN_vkGetPhysicalDeviceMemoryProperties2 next_props2;
static PFN_vkGetPhysicalDeviceMemoryProperties2 next_props2_khr;
static PFN_vkAllocateMemory next_alloc;
static PFN_vkFreeMemory next_free;
static PFN_vkQueueSubmit next_submit;

static int failing(const char *what) {
    const char *fail = getenv("BASED_VK_FAIL");
    return fail && strcmp(fail, what) == 0;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static VkDeviceSize used;
static struct { uint64_t handle; VkDeviceSize size; } *allocs;
static size_t n_allocs, cap_allocs;

static VkDeviceSize limit(void) {
    const char *v = getenv("BASED_VK_MEMORY_LIMIT");
    return v && *v ? (VkDeviceSize)strtoull(v, NULL, 10) : 0;
}

static void clamp_heaps(VkPhysicalDeviceMemoryProperties *p) {
    VkDeviceSize lim = limit();
    if (!lim) return;
    for (uint32_t i = 0; i < p->memoryHeapCount; i++)
        if (p->memoryHeaps[i].size > lim) p->memoryHeaps[i].size = lim;
}

static VKAPI_ATTR void VKAPI_CALL props(VkPhysicalDevice pd, VkPhysicalDeviceMemoryProperties *p) {
    next_props(pd, p);
    clamp_heaps(p);
}

static void props2_common(PFN_vkGetPhysicalDeviceMemoryProperties2 next, VkPhysicalDevice pd,
                          VkPhysicalDeviceMemoryProperties2 *p) {
    next(pd, p);
    clamp_heaps(&p->memoryProperties);
    VkDeviceSize lim = limit();
    if (!lim) return;
    for (VkBaseOutStructure *s = (VkBaseOutStructure *)p->pNext; s; s = s->pNext) {
        if (s->sType == VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT) {
            VkPhysicalDeviceMemoryBudgetPropertiesEXT *b = (VkPhysicalDeviceMemoryBudgetPropertiesEXT *)s;
            pthread_mutex_lock(&lock);
            for (uint32_t i = 0; i < p->memoryProperties.memoryHeapCount; i++) {
                b->heapBudget[i] = lim;
                b->heapUsage[i] = used;
            }
            pthread_mutex_unlock(&lock);
        }
    }
}

static VKAPI_ATTR void VKAPI_CALL props2(VkPhysicalDevice pd, VkPhysicalDeviceMemoryProperties2 *p) {
    props2_common(next_props2, pd, p);
}

static VKAPI_ATTR void VKAPI_CALL props2_khr(VkPhysicalDevice pd, VkPhysicalDeviceMemoryProperties2 *p) {
    props2_common(next_props2_khr ? next_props2_khr : next_props2, pd, p);
}

static VKAPI_ATTR VkResult VKAPI_CALL alloc(VkDevice d, const VkMemoryAllocateInfo *info,
                                            const VkAllocationCallbacks *cb, VkDeviceMemory *mem) {
    VkDeviceSize lim = limit();
    pthread_mutex_lock(&lock);
    if (lim && used + info->allocationSize > lim) {
        pthread_mutex_unlock(&lock);
        return VK_ERROR_OUT_OF_DEVICE_MEMORY;
    }
    pthread_mutex_unlock(&lock);
    VkResult r = next_alloc(d, info, cb, mem);
    if (r != VK_SUCCESS) return r;
    pthread_mutex_lock(&lock);
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? cap_allocs * 2 : 256;
        allocs = realloc(allocs, cap_allocs * sizeof(*allocs));
    }
    allocs[n_allocs].handle = (uint64_t)*mem;
    allocs[n_allocs].size = info->allocationSize;
    n_allocs++;
    used += info->allocationSize;
    pthread_mutex_unlock(&lock);
    return r;
}

static VKAPI_ATTR void VKAPI_CALL release(VkDevice d, VkDeviceMemory mem, const VkAllocationCallbacks *cb) {
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_allocs; i++) {
        if (allocs[i].handle == (uint64_t)mem) {
            used -= allocs[i].size;
            allocs[i] = allocs[--n_allocs];
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    next_free(d, mem, cb);
}

static VKAPI_ATTR VkResult VKAPI_CALL create_instance(const VkInstanceCreateInfo *ci,
                                                      const VkAllocationCallbacks *cb, VkInstance *inst) {
    VkLayerInstanceCreateInfo *link = (VkLayerInstanceCreateInfo *)ci->pNext;
    while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_INSTANCE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
        link = (VkLayerInstanceCreateInfo *)link->pNext;
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    next_gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    PFN_vkCreateInstance next = (PFN_vkCreateInstance)next_gipa(VK_NULL_HANDLE, "vkCreateInstance");
    VkResult r = next(ci, cb, inst);
    if (r != VK_SUCCESS) return r;
    next_props = (PFN_vkGetPhysicalDeviceMemoryProperties)next_gipa(*inst, "vkGetPhysicalDeviceMemoryProperties");
    next_props2 = (PFN_vkGetPhysicalDeviceMemoryProperties2)next_gipa(*inst, "vkGetPhysicalDeviceMemoryProperties2");
    next_props2_khr = (PFN_vkGetPhysicalDeviceMemoryProperties2)next_gipa(*inst, "vkGetPhysicalDeviceMemoryProperties2KHR");
    return r;
}

static VKAPI_ATTR VkResult VKAPI_CALL create_device(VkPhysicalDevice pd, const VkDeviceCreateInfo *ci,
                                                    const VkAllocationCallbacks *cb, VkDevice *dev) {
    if (failing("create_device")) return VK_ERROR_INITIALIZATION_FAILED;
    VkLayerDeviceCreateInfo *link = (VkLayerDeviceCreateInfo *)ci->pNext;
    while (link && !(link->sType == VK_STRUCTURE_TYPE_LOADER_DEVICE_CREATE_INFO && link->function == VK_LAYER_LINK_INFO))
        link = (VkLayerDeviceCreateInfo *)link->pNext;
    if (!link) return VK_ERROR_INITIALIZATION_FAILED;
    PFN_vkGetInstanceProcAddr gipa = link->u.pLayerInfo->pfnNextGetInstanceProcAddr;
    next_gdpa = link->u.pLayerInfo->pfnNextGetDeviceProcAddr;
    link->u.pLayerInfo = link->u.pLayerInfo->pNext;
    PFN_vkCreateDevice next = (PFN_vkCreateDevice)gipa(VK_NULL_HANDLE, "vkCreateDevice");
    VkResult r = next(pd, ci, cb, dev);
    if (r != VK_SUCCESS) return r;
    next_alloc = (PFN_vkAllocateMemory)next_gdpa(*dev, "vkAllocateMemory");
    next_free = (PFN_vkFreeMemory)next_gdpa(*dev, "vkFreeMemory");
    next_submit = (PFN_vkQueueSubmit)next_gdpa(*dev, "vkQueueSubmit");
    return r;
}

static VKAPI_ATTR VkResult VKAPI_CALL submit(VkQueue q, uint32_t n, const VkSubmitInfo *s, VkFence f) {
    if (failing("submit")) return VK_ERROR_DEVICE_LOST;
    return next_submit(q, n, s, f);
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice dev, const char *name);

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(VkInstance inst, const char *name) {
    if (!strcmp(name, "vkGetInstanceProcAddr")) return (PFN_vkVoidFunction)vkGetInstanceProcAddr;
    if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    if (!strcmp(name, "vkCreateInstance")) return (PFN_vkVoidFunction)create_instance;
    if (!strcmp(name, "vkCreateDevice")) return (PFN_vkVoidFunction)create_device;
    if (!strcmp(name, "vkGetPhysicalDeviceMemoryProperties")) return (PFN_vkVoidFunction)props;
    if (!strcmp(name, "vkGetPhysicalDeviceMemoryProperties2")) return (PFN_vkVoidFunction)props2;
    if (!strcmp(name, "vkGetPhysicalDeviceMemoryProperties2KHR")) return (PFN_vkVoidFunction)props2_khr;
    if (!strcmp(name, "vkAllocateMemory")) return (PFN_vkVoidFunction)alloc;
    if (!strcmp(name, "vkFreeMemory")) return (PFN_vkVoidFunction)release;
    if (!strcmp(name, "vkQueueSubmit")) return (PFN_vkVoidFunction)submit;
    return next_gipa ? next_gipa(inst, name) : NULL;
}

EXPORT VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetDeviceProcAddr(VkDevice dev, const char *name) {
    if (!strcmp(name, "vkGetDeviceProcAddr")) return (PFN_vkVoidFunction)vkGetDeviceProcAddr;
    if (!strcmp(name, "vkAllocateMemory")) return (PFN_vkVoidFunction)alloc;
    if (!strcmp(name, "vkFreeMemory")) return (PFN_vkVoidFunction)release;
    if (!strcmp(name, "vkQueueSubmit")) return (PFN_vkVoidFunction)submit;
    return next_gdpa ? next_gdpa(dev, name) : NULL;
}
