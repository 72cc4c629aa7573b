import time, pickle, numpy as np, torch
torch.set_num_threads(1)
t=time.time()
from tandem.fleet.users import task_fleet
users=task_fleet()
print(len(users), time.time()-t)
for u in users: u.features
print('feat', time.time()-t, users[0].windows.shape, users[0].features.shape)
pickle.dump([(u.user_id,u.windows,u.labels,u.window_keys,u.captured_at,u.features, getattr(u,'index',None)) for u in users], open('/tmp/r19/fleet.pkl','wb'))
