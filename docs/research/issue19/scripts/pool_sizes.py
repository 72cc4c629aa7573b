import numpy as np
from common import *
from tandem.training.personalization import local_split
users = load_users()
cnt = []
for u in users:
    pool, test = local_split(u)
    for c in CLASSES:
        cnt.append(((u.labels[pool] == c).sum(), (u.labels[test] == c).sum()))
cnt = np.array(cnt)
print("pool windows per (user,class): min %d p10 %d median %d max %d" % (cnt[:,0].min(), np.percentile(cnt[:,0],10), np.median(cnt[:,0]), cnt[:,0].max()))
print("test windows per (user,class): median %d" % np.median(cnt[:,1]))
print("share of (user,class) with pool < 20:", (cnt[:,0] < 20).mean(), " <10:", (cnt[:,0] < 10).mean())
sess = [len(set(k.split(':')[0] for k in u.window_keys)) for u in users]; print("sessions per user", sess)
